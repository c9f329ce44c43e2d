"""The database connection of one execution environment.

One connection per environment, opened on first use and kept across invocations (Lambda runs
one request at a time per environment); thread-local, so that no two threads ever share one.
Autocommit: every call of a SQL function is its own transaction, so a lock is held for one
round trip. prepare_threshold=None and no session SET keep RDS Proxy from pinning the
connection.

Where to connect: DATABASE_URL when set (the local stage, the tests); on AWS, DB_HOST (the RDS
Proxy endpoint), DB_PORT, DB_NAME and DB_USER, signing in with a 15-minute IAM token over TLS
verified against the public CAs (the proxy's certificate is issued by Amazon's public CA).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import certifi
import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from tickets.refusals import ServiceUnavailable

_environment = threading.local()

CONNECT_TIMEOUT_SECONDS = 5


@functools.cache
def _rds_client() -> Any:
    return boto3.client("rds")


def conninfo() -> str:
    """The connection string: DATABASE_URL, else the RDS Proxy with a fresh IAM token."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    host, port, user = os.environ["DB_HOST"], int(os.environ.get("DB_PORT", "5432")), os.environ["DB_USER"]
    token = _rds_client().generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user)
    return make_conninfo(host=host, port=port, dbname=os.environ.get("DB_NAME", "tickets"), user=user,
                         password=token, sslmode="verify-full", sslrootcert=certifi.where())


def _connect() -> psycopg.Connection[dict[str, Any]]:
    try:
        return psycopg.connect(
            conninfo(),
            autocommit=True,
            prepare_threshold=None,
            row_factory=dict_row,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "tickets"),
        )
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable() from exc


def connection() -> psycopg.Connection[dict[str, Any]]:
    """The environment's connection, reopened when it was closed or broken."""
    conn: psycopg.Connection[dict[str, Any]] | None = getattr(_environment, "connection", None)
    if conn is None or conn.closed or conn.broken:
        conn = _environment.connection = _connect()
    return conn


@contextmanager
def database() -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """The connection, with a lost database reported as 503 and the broken connection dropped."""
    conn = connection()
    try:
        yield conn
    except psycopg.OperationalError as exc:
        if conn.broken or conn.closed:
            _environment.connection = None
        raise ServiceUnavailable() from exc


def call(function_sql: str, params: tuple[Any, ...]) -> dict[str, Any]:
    """Runs one SQL function returning jsonb as its own transaction; returns its result."""
    with database() as conn:
        row = conn.execute(f"SELECT {function_sql} AS result", params).fetchone()
    assert row is not None
    result: dict[str, Any] = row["result"]
    return result


def call_void(function_sql: str, params: tuple[Any, ...]) -> None:
    """Runs one SQL function returning nothing, as its own transaction."""
    with database() as conn:
        conn.execute(f"SELECT {function_sql}", params)
