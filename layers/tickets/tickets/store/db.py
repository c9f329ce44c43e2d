"""The database connection of one execution environment, and the one way Python reaches SQL.

Python calls SQL functions only (`call`): every rule, read and write lives in
store/functions/*.sql. One connection per environment, opened on first use and kept across
invocations (Lambda runs one request at a time per environment); thread-local, so that no two
threads ever share one. Autocommit: every call of a SQL function is its own transaction, so a
lock is held for one round trip. prepare_threshold=None and no session SET keep RDS Proxy from
pinning the connection.

Faults: a call that finds its connection broken (a failover, the proxy's idle timeout) runs once
more on a fresh connection, which is safe because every SQL function is idempotent for the
request that calls it (see functions/30_reservations.sql). Every call is bounded by the
invocation's time budget (`time_budget`): a call still running at the deadline is cancelled and
reported as StoreUnavailable, so the function answers 503 before its own timeout.

Where to connect: DATABASE_URL when set (the local stage, the tests); on AWS, DB_HOST (the RDS
Proxy endpoint), DB_PORT, DB_NAME and DB_USER, signing in with a 15-minute IAM token over TLS
verified against the public CAs (the proxy's certificate is issued by Amazon's public CA).

psycopg is imported by the first call, not with this module: a function's cold import stays
short, and the first request that reaches the database pays it (the local stage's init process
loads it once for the workers it forks, localstage/workers.py).
"""

from __future__ import annotations

import contextvars
import functools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tickets.settings import settings

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

_environment = threading.local()

CONNECT_TIMEOUT_SECONDS = 5
# libpq's shortest connect timeout.
MIN_CONNECT_TIMEOUT_SECONDS = 2
# The monotonic time by which the current invocation's store calls must have ended; None: unbounded.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("store_deadline", default=None)


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
    from psycopg.conninfo import make_conninfo  # noqa: PLC0415 - psycopg on first use (the module's docstring)

    token = _rds_client().generate_db_auth_token(DBHostname=config.db_host, Port=config.db_port,
                                                 DBUsername=config.db_user)
    return make_conninfo(host=config.db_host, port=config.db_port, dbname=config.db_name, user=config.db_user,
                         password=token, sslmode="verify-full", sslrootcert=certifi.where())


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Bounds every store call made inside it to end within `seconds` from now."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _seconds_left() -> float | None:
    deadline = _deadline.get()
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise StoreUnavailable("the invocation's time budget is spent")
    return left


def _connect() -> psycopg.Connection[dict[str, Any]]:
    import psycopg  # noqa: PLC0415 - on first use (the module's docstring)
    from psycopg.rows import dict_row  # noqa: PLC0415

    left = _seconds_left()
    timeout = CONNECT_TIMEOUT_SECONDS if left is None else max(MIN_CONNECT_TIMEOUT_SECONDS, min(left, 5))
    try:
        return psycopg.connect(
            conninfo(),
            autocommit=True,
            prepare_threshold=None,
            row_factory=dict_row,
            connect_timeout=int(timeout),
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


def _drop_if_broken(conn: psycopg.Connection[dict[str, Any]]) -> bool:
    if conn.broken or conn.closed:
        _environment.connection = None
        return True
    return False


@contextmanager
def _cancelled_at_deadline(conn: psycopg.Connection[dict[str, Any]]) -> Iterator[None]:
    """Cancels the statement running on `conn` when the time budget ends (no session SET:
    statement_timeout stays on the role, as a backstop)."""
    left = _seconds_left()
    if left is None:
        yield
        return
    timer = threading.Timer(left, conn.cancel_safe)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _function_call(function: str, params: tuple[Any, ...]) -> sql.Composed:
    from psycopg import sql  # noqa: PLC0415 - on first use (the module's docstring)

    arguments = sql.SQL(", ").join(sql.Placeholder() for _ in params)
    return sql.SQL("{}({})").format(sql.Identifier(function), arguments)


def call(function: str, *params: Any) -> Any:
    """Runs one SQL function as its own transaction and returns its single value (jsonb: a dict;
    a function's OUT parameters, a record: the tuple of their values, in order).

    A dict argument is passed as jsonb. The value comes in binary, where a record carries the
    types of its fields (in text, psycopg would give every field as a string)."""
    import psycopg  # noqa: PLC0415 - on first use (the module's docstring)
    from psycopg import sql  # noqa: PLC0415
    from psycopg.types.json import Jsonb  # noqa: PLC0415

    params = tuple(Jsonb(param) if isinstance(param, dict) else param for param in params)
    statement = sql.SQL("SELECT {} AS result").format(_function_call(function, params))
    for attempt in (1, 2):
        conn = connection()
        try:
            with _cancelled_at_deadline(conn):
                row = conn.execute(statement, params, binary=True).fetchone()
        except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable) as exc:
            raise StoreUnavailable(f"{function}: {exc}") from exc
        except psycopg.OperationalError as exc:
            # A connection found broken is retried once, fresh; anything else is the store's answer.
            if _drop_if_broken(conn) and attempt == 1:
                continue
            raise StoreUnavailable(f"{function}: {exc}") from exc
        except psycopg.errors.UniqueViolation:
            # Two runs of one request raced past its key's check; run again, the winner's row answers.
            if attempt == 1:
                continue
            raise
        assert row is not None
        return row["result"]
    raise AssertionError("unreachable")
