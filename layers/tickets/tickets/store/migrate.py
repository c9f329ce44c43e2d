"""Applies the schema: versioned table migrations, then the SQL function files, then the privileges.

    python -m tickets.store.migrate            # uses DATABASE_URL

migrations/NNNN_*.sql hold tables and roles: each runs once, in order, recorded in
schema_migrations. functions/*.sql hold every rule and read (CREATE OR REPLACE): each is
re-applied, in file name order, whenever its text changes (its checksum is recorded in
schema_functions), so that "all capacity rules in one place" stays true as rules are added.
privileges.sql runs after every run: every object goes to tickets_owner, and tickets_app may
execute the entry points only (migrations/0005_roles.sql). On AWS the deploy passes the app
role's password too (from the stack's secret), which is set last.

Each file runs in its own transaction under a lock on schema_migrations, so several deployers
may run this at once. Nothing here pins an RDS Proxy connection: no session SET, no advisory
lock (a table lock ends with its transaction), no prepared statement.

The migrations of a release run before its code goes live, while the previous release's code
still serves (template.yaml: every function depends on SchemaMigrations), and stay in place if
the deploy rolls back: so a migration only adds what the new code needs (expand), and removes
what no code uses any more a release later (contract). README, "Changing the schema".
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING

from tickets.settings import settings

if TYPE_CHECKING:
    import psycopg

APP_ROLE = "tickets_app"
RETRY_INTERVAL_SECONDS = 10.0
# SHARE ROW EXCLUSIVE conflicts with itself: one migrator at a time, readers undisturbed.
_SCHEMA_LOCK = "LOCK TABLE schema_migrations IN SHARE ROW EXCLUSIVE MODE"

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


def privileges_sql() -> str:
    return (resources.files("tickets.store") / "privileges.sql").read_text(encoding="utf-8")


def _connect(database_url: str) -> psycopg.Connection[tuple[object, ...]]:
    import psycopg  # noqa: PLC0415 - on first use, as in tickets.store.db

    return psycopg.connect(database_url, autocommit=True, prepare_threshold=None, connect_timeout=10)


def apply_migrations(database_url: str, *, app_role_password: str | None = None) -> list[str]:
    """Applies what is missing or changed; returns the migrations and function files applied now."""
    with _connect(database_url) as conn:
        return _apply(conn, app_role_password)


def _apply(conn: psycopg.Connection[tuple[object, ...]], app_role_password: str | None = None) -> list[str]:
    applied_now: list[str] = []
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_functions ("
        " file text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for version, text in migration_files():
        with conn.transaction():
            conn.execute(_SCHEMA_LOCK)
            done = conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,)).fetchone()
            if done:
                continue
            conn.execute(text.encode())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied_now.append(version)
    for name, text in function_files():
        checksum = hashlib.sha256(text.encode()).hexdigest()
        with conn.transaction():
            conn.execute(_SCHEMA_LOCK)
            current = conn.execute("SELECT 1 FROM schema_functions WHERE file = %s AND checksum = %s",
                                   (name, checksum)).fetchone()
            if current:
                continue
            conn.execute(text.encode())
            conn.execute("INSERT INTO schema_functions (file, checksum) VALUES (%s, %s)"
                         " ON CONFLICT (file) DO UPDATE SET checksum = excluded.checksum, applied_at = now()",
                         (name, checksum))
            applied_now.append(f"functions/{name}")
    with conn.transaction():
        conn.execute(_SCHEMA_LOCK)
        conn.execute(privileges_sql().encode())
    if app_role_password:
        set_password(conn, APP_ROLE, app_role_password)
    return applied_now


def set_password(conn: psycopg.Connection[tuple[object, ...]], role: str, password: str) -> None:
    """Sets a role's password as a SCRAM verifier computed here: the password itself never
    reaches the server, its logs or pg_stat_statements."""
    from psycopg import sql  # noqa: PLC0415 - on first use, as in tickets.store.db

    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier.decode())))


def apply_when_reachable(conninfo: Callable[[], str], *, give_up_in_seconds: float,
                         app_role_password: str | None = None,
                         sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """apply_migrations, retrying only the connection while the database cannot be reached (a new
    cluster's proxy target takes minutes to become available); a failing migration is not retried."""
    import psycopg  # noqa: PLC0415 - on first use, as in tickets.store.db

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
            return _apply(conn, app_role_password)


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
