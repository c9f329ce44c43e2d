"""The rules the migrations keep: they run through RDS Proxy without pinning its connection, and a
release's migrations stay backward compatible with the code still running (expand, then contract)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

# What makes RDS Proxy pin a client connection to one database connection, when a statement sent
# by the client does it (inside a function body the proxy sees nothing).
PINNING = re.compile(
    r"^(SET|RESET|PREPARE|DEALLOCATE|DISCARD|LISTEN|LOAD|DECLARE)\b"  # statements that change the session
    r"|\b(pg_advisory_lock|pg_try_advisory_lock|pg_advisory_xact_lock|pg_try_advisory_xact_lock|set_config"
    r"|nextval|setval)\s*\("
    r"|^CREATE\s+(TEMP|TEMPORARY)\b",
    re.IGNORECASE)

# What breaks the code of the previous release, still serving while a deploy runs and back in
# service when one rolls back: allowed only in a migration that says why no running code uses it.
CONTRACTING = re.compile(
    r"\b(DROP\s+(TABLE|COLUMN|FUNCTION|VIEW|TYPE|SEQUENCE)|RENAME\b|ALTER\s+COLUMN\s+\w+\s+(SET\s+NOT\s+NULL|TYPE)"
    r"|TRUNCATE\b|DELETE\s+FROM)",
    re.IGNORECASE)


def top_level(sql: str) -> str:
    """The statements as the proxy sees them: comments and dollar-quoted bodies left out."""
    sql = re.sub(r"--[^\n]*", "", sql)
    return re.sub(r"\$(\w*)\$.*?\$\1\$", "$$", sql, flags=re.DOTALL)


def pins(sql: str) -> bool:
    return any(PINNING.search(statement.strip()) for statement in top_level(sql).split(";"))


def test_no_migration_contracts_without_saying_why() -> None:
    from tickets.store.migrate import migration_files

    for version, sql in migration_files():
        if CONTRACTING.search(top_level(sql)):
            assert re.search(r"^-- contract: \S", sql, re.MULTILINE), (
                f"{version} removes or changes what the running code may use: write `-- contract: <which "
                f"release stopped using it>` at its top (README, 'Changing the schema')")


def test_the_patterns_see_what_they_look_for() -> None:
    assert pins("SELECT 1;\n  SET statement_timeout = 0;") and pins("set local role x")
    assert pins("SELECT pg_advisory_xact_lock(1)") and pins("create temp table t (i int)")
    assert not pins("ALTER ROLE x SET statement_timeout = '15s'")
    assert not pins("CREATE FUNCTION f() RETURNS int LANGUAGE sql\nSET lock_timeout = '5s'"
                    " AS $$ SELECT nextval('s') $$")  # in a definition: applies inside f only
    assert CONTRACTING.search("ALTER TABLE t DROP COLUMN c") and not CONTRACTING.search("ADD COLUMN c text")


class RecordingCursor(psycopg.Cursor[Any]):
    sent: list[str] = []

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = query.decode() if isinstance(query, bytes) else query
        RecordingCursor.sent.append(text if isinstance(text, str) else text.as_string(self.connection))
        return super().execute(query, params, **kwargs)


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    name = f"fresh_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield psycopg.conninfo.make_conninfo(database_url, dbname=name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_nothing_the_migrator_sends_pins_an_rds_proxy_connection(empty_database: str) -> None:
    from tickets.store import migrate

    RecordingCursor.sent = []
    with psycopg.connect(empty_database, autocommit=True, prepare_threshold=None,
                         cursor_factory=RecordingCursor) as conn:
        migrate._apply(conn, app_role_password="a-password-0123456789")
        migrate._apply(conn)
    assert len(RecordingCursor.sent) > 10
    pinning = [statement[:200] for statement in RecordingCursor.sent if pins(statement)]
    assert pinning == []
