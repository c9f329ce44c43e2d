"""The database connection of one execution environment, and the one way Python reaches SQL.

Python calls SQL functions only (`call`, `call_rows`): every rule, read and write lives in
store/functions/*.sql. One connection per environment, opened on first use and kept across
invocations (Lambda runs one request at a time per environment); thread-local, so that no two
threads ever share one. Autocommit: every call of a SQL function is its own transaction, so a
lock is held for one round trip. prepare_threshold=None and no session SET keep RDS Proxy from
pinning the connection.

Where to connect: DATABASE_URL when set (the local stage, the tests); on AWS, DB_HOST (the RDS
Proxy endpoint), DB_PORT, DB_NAME and DB_USER, signing in with a 15-minute IAM token over TLS
verified against the public CAs (the proxy's certificate is issued by Amazon's public CA).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tickets.settings import settings

_environment = threading.local()

CONNECT_TIMEOUT_SECONDS = 5


class StoreUnavailable(Exception):
    """A backing store cannot be reached or did not answer in time; the edge answers 503."""


@functools.cache
def _rds_client() -> Any:
    import boto3  # noqa: PLC0415 - only where the proxy wants an IAM token: no import cost elsewhere

    return boto3.client("rds")


def conninfo() -> str:
    """The connection string: DATABASE_URL, else the RDS Proxy with a fresh IAM token."""
    config = settings()
    if config.database_url:
        return config.database_url
    if not config.db_host:
        raise StoreUnavailable("neither DATABASE_URL nor DB_HOST is set")
    import certifi  # noqa: PLC0415 - as boto3 above

    token = _rds_client().generate_db_auth_token(DBHostname=config.db_host, Port=config.db_port,
                                                 DBUsername=config.db_user)
    return make_conninfo(host=config.db_host, port=config.db_port, dbname=config.db_name, user=config.db_user,
                         password=token, sslmode="verify-full", sslrootcert=certifi.where())


def _connect() -> psycopg.Connection[dict[str, Any]]:
    try:
        return psycopg.connect(
            conninfo(),
            autocommit=True,
            prepare_threshold=None,
            row_factory=dict_row,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=settings().function_name,
        )
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(str(exc)) from exc


def connection() -> psycopg.Connection[dict[str, Any]]:
    """The environment's connection, reopened when it was closed or broken."""
    conn: psycopg.Connection[dict[str, Any]] | None = getattr(_environment, "connection", None)
    if conn is None or conn.closed or conn.broken:
        conn = _environment.connection = _connect()
    return conn


@contextmanager
def database() -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """The connection, with a lost database reported as StoreUnavailable and the broken connection dropped."""
    conn = connection()
    try:
        yield conn
    except psycopg.OperationalError as exc:
        if conn.broken or conn.closed:
            _environment.connection = None
        raise StoreUnavailable(str(exc)) from exc


def _function_call(function: str, params: tuple[Any, ...]) -> sql.Composed:
    arguments = sql.SQL(", ").join(sql.Placeholder() for _ in params)
    return sql.SQL("{}({})").format(sql.Identifier(function), arguments)


def call(function: str, *params: Any) -> Any:
    """Runs one SQL function as its own transaction and returns its single value (jsonb: a dict).

    A dict argument is passed as jsonb."""
    params = tuple(Jsonb(param) if isinstance(param, dict) else param for param in params)
    with database() as conn:
        row = conn.execute(sql.SQL("SELECT {} AS result").format(_function_call(function, params)),
                           params).fetchone()
    assert row is not None
    return row["result"]
