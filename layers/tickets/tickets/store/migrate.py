"""Applies the ordered, versioned SQL migrations in tickets/store/migrations/.

    python -m tickets.store.migrate            # uses DATABASE_URL

Each file runs once, in its own transaction, recorded in schema_migrations; a transaction-
scoped advisory lock lets several deployers run this at once safely.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from importlib import resources

import psycopg

MIGRATION_LOCK_KEY = 7_310_455_001
RETRY_INTERVAL_SECONDS = 10.0

log = logging.getLogger(__name__)


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) for every migration, in order."""
    folder = resources.files("tickets.store") / "migrations"
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (folder / name).read_text(encoding="utf-8")) for name in names]


def _connect(database_url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(database_url, autocommit=True, prepare_threshold=None, connect_timeout=10)


def apply_migrations(database_url: str) -> list[str]:
    """Applies what is missing; returns the versions applied now."""
    with _connect(database_url) as conn:
        return _apply(conn)


def _apply(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    applied_now: list[str] = []
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
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
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    applied = apply_migrations(database_url)
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
