"""Applies the schema: versioned table migrations, then the SQL function files.

    python -m tickets.store.migrate            # uses DATABASE_URL

migrations/NNNN_*.sql hold tables: each runs once, in order, recorded in schema_migrations.
functions/*.sql hold every rule and read (CREATE OR REPLACE): each is re-applied, in file name
order, whenever its text changes (its checksum is recorded in schema_functions), so that "all
capacity rules in one place" stays true as rules are added. Each file runs in its own
transaction under a transaction-scoped advisory lock, so several deployers may run this at once.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections.abc import Callable
from importlib import resources

import psycopg

from tickets.settings import settings

MIGRATION_LOCK_KEY = 7_310_455_001
RETRY_INTERVAL_SECONDS = 10.0

log = logging.getLogger(__name__)


def _sql_files(folder_name: str) -> list[tuple[str, str]]:
    folder = resources.files("tickets.store") / folder_name
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (folder / name).read_text(encoding="utf-8")) for name in names]


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) for every table migration, in order."""
    return _sql_files("migrations")


def function_files() -> list[tuple[str, str]]:
    """(name, sql) for every SQL function file, in order."""
    return _sql_files("functions")


def _connect(database_url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(database_url, autocommit=True, prepare_threshold=None, connect_timeout=10)


def apply_migrations(database_url: str) -> list[str]:
    """Applies what is missing or changed; returns the migrations and function files applied now."""
    with _connect(database_url) as conn:
        return _apply(conn)


def _apply(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    applied_now: list[str] = []
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_functions ("
        " file text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for version, sql in migration_files():
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            done = conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,)).fetchone()
            if done:
                continue
            conn.execute(sql.encode())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied_now.append(version)
    for name, sql in function_files():
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            current = conn.execute("SELECT 1 FROM schema_functions WHERE file = %s AND checksum = %s",
                                   (name, checksum)).fetchone()
            if current:
                continue
            conn.execute(sql.encode())
            conn.execute("INSERT INTO schema_functions (file, checksum) VALUES (%s, %s)"
                         " ON CONFLICT (file) DO UPDATE SET checksum = excluded.checksum, applied_at = now()",
                         (name, checksum))
            applied_now.append(f"functions/{name}")
    return applied_now


def apply_when_reachable(conninfo: Callable[[], str], *, give_up_in_seconds: float,
                         sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """apply_migrations, retrying only the connection while the database cannot be reached (a new
    cluster's proxy target takes minutes to become available); a failing migration is not retried."""
    deadline = time.monotonic() + give_up_in_seconds
    while True:
        try:
            conn = _connect(conninfo())  # a fresh IAM token each attempt
        except psycopg.OperationalError as exc:
            if time.monotonic() + RETRY_INTERVAL_SECONDS > deadline:
                raise
            log.warning("database not reachable yet (%s); retrying in %.0f s", exc, RETRY_INTERVAL_SECONDS)
            sleep(RETRY_INTERVAL_SECONDS)
            continue
        with conn:
            return _apply(conn)


def main() -> int:
    database_url = settings().database_url
    if not database_url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    applied = apply_migrations(database_url)
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
