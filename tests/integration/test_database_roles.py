"""The functions' database role, checked against the real PostgreSQL after the migrations: what the
functions sign in as on AWS (tickets_app) runs every route, and can do nothing else."""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.conftest import SettingsEnvironment
from tests.support.api import Api

ROOT = Path(__file__).resolve().parents[2]
APP_ROLE = "tickets_app"
OWNER_ROLE = "tickets_owner"


def app_url(database_url: str) -> str:
    return psycopg.conninfo.make_conninfo(database_url, user=APP_ROLE)


@pytest.fixture
def as_app(db: psycopg.Connection[tuple[object, ...]], app_database_url: str,
           settings_env: SettingsEnvironment) -> Iterator[str]:
    """The handlers sign in as tickets_app, as on AWS (each test's database connection afresh)."""
    from tickets.store import db as store

    def drop_connection() -> None:
        conn = getattr(store._environment, "connection", None)
        if conn is not None:
            conn.close()
        store._environment.connection = None

    drop_connection()
    settings_env.setenv("DATABASE_URL", app_url(app_database_url))
    yield app_url(app_database_url)
    drop_connection()


def test_the_app_role_is_no_superuser_and_owns_nothing(db: psycopg.Connection[tuple[object, ...]]) -> None:
    role = db.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin"
                      " FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
    assert role == (False, False, False, False, False, True)
    owner = db.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, rolcanlogin FROM pg_roles WHERE rolname = %s",
                       (OWNER_ROLE,)).fetchone()
    assert owner == (False, False, False, False)
    members = db.execute("SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
                         " WHERE m.member = %s::regrole", (APP_ROLE,)).fetchall()
    assert members == []  # no role's rights by membership either
    owners = db.execute(
        "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
        " WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'S', 'v', 'm')"
        " UNION SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
    ).fetchall()
    assert owners == [(OWNER_ROLE,)]
    rows = db.execute("SELECT split_part(s, '=', 1), split_part(s, '=', 2) FROM pg_db_role_setting,"
                      " unnest(setconfig) s WHERE setrole = %s::regrole AND setdatabase = 0", (APP_ROLE,)).fetchall()
    settings = {str(name): str(value) for name, value in rows}
    assert settings == {"statement_timeout": "5s", "idle_in_transaction_session_timeout": "30s", "jit": "off"}


PREVIOUS_RELEASES_ENTRY_POINTS = {"reserve_seats"}


def called_sql_functions() -> set[str]:
    """The SQL functions the layer calls: the first argument of every db.call(...)."""
    names: set[str] = set()
    for path in (ROOT / "layers" / "tickets" / "tickets").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "call"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                names.add(str(node.args[0].value))
    return names


def test_the_app_role_executes_exactly_the_functions_the_code_calls(db: psycopg.Connection[tuple[object, ...]]) -> None:
    rows = db.execute("SELECT proname, prosecdef, has_function_privilege(%s, oid, 'EXECUTE'), proconfig"
                      " FROM pg_proc WHERE pronamespace = 'public'::regnamespace", (APP_ROLE,)).fetchall()
    executable = {name for name, _, allowed, _ in rows if allowed}
    entry_points = {name for name, definer, _, _ in rows if definer}
    # The previous release's code calls these while a deploy runs (30_reservations.sql): entry points a release longer.
    assert called_sql_functions() | PREVIOUS_RELEASES_ENTRY_POINTS == executable == entry_points
    for name, definer, _, config in rows:
        if definer:  # a SECURITY DEFINER function must not take its search path from the caller
            assert isinstance(config, list) and "search_path=public, pg_temp" in config, name


def test_every_route_works_as_the_app_role(api: Api, key: str, as_app: str) -> None:
    event = api.create_event(tiers=[{"name": "GA", "capacity": 3, "price": 1000, "max_per_order": 3}])
    event_id = event["event_id"]
    assert api.request("GET", f"/events/{event_id}").status == 200
    assert api.availability(event_id)["available_seats"] == 3
    held = api.reserve(event_id, 2, key=key)
    assert held.status == 201, held.text
    reservation_id = held.body["reservation_id"]
    assert api.request("GET", f"/reservations/{reservation_id}").status == 200
    confirmed = api.confirm(reservation_id, key=key + "-confirm")
    assert confirmed.status == 200, confirmed.text
    ticket = confirmed.body["tickets"][0]["ticket_code"]
    checked = api.request("POST", f"/tickets/{ticket}/check-in", admin=True)
    assert checked.status == 200, checked.text
    other = api.reserve(event_id, 1, key=key + "-other")
    assert api.request("DELETE", f"/reservations/{other.body['reservation_id']}").status == 200
    assert api.reserve(event_id, 2, key=key + "-late").error_code == "insufficient_inventory"
    assert api.request("GET", "/health").status == 200
    expired = api.invoke_raw({}, "ExpireFunction")
    assert expired["expired"] == 0
    with psycopg.connect(as_app) as conn:
        hold = conn.execute("SELECT current_user, h.answer, h.hold_booking_reference"
                            " FROM reserve_hold(%s, NULL, 1, 'x', 'y', %s, 's', NULL, NULL) h",
                            (event_id, uuid.uuid4())).fetchone()
        assert hold is not None and hold[:2] == (APP_ROLE, None) and hold[2].startswith("EVT-"), hold


@pytest.mark.parametrize("statement", [
    "CREATE TABLE intruder (id int)",
    "CREATE TEMPORARY TABLE intruder (id int)",
    "CREATE SCHEMA intruder",
    "CREATE FUNCTION intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE OR REPLACE FUNCTION ready() RETURNS boolean LANGUAGE sql AS 'SELECT true'",
    "DROP TABLE events",
    "DROP FUNCTION reserve_hold(uuid, uuid, integer, text, text, uuid, text, text, text, text[], boolean)",
    "ALTER TABLE events ADD COLUMN intruder int",
    "ALTER FUNCTION ready() OWNER TO tickets_app",
    "CREATE INDEX intruder ON events (name)",
    "TRUNCATE events",
    "SELECT * FROM reservations",
    "SELECT customer_fingerprint FROM reservations",
    "INSERT INTO events (event_id, name, starts_at, currency, hold_seconds)"
    " VALUES (gen_random_uuid(), 'x', now(), 'EUR', 60)",
    "UPDATE counter_shares SET free = 0",
    "DELETE FROM payments",
    "SELECT nextval('booking_reference_seq')",
    "SELECT inventory_take(gen_random_uuid(), 1, NULL)",
    "SELECT inventory_release(gen_random_uuid(), 1, NULL)",
    "SELECT reservation_json(NULL::reservations)",
    "SET ROLE tickets_owner",
    "GRANT tickets_owner TO tickets_app",
])
def test_the_app_role_can_do_nothing_else(app_database_url: str, statement: str) -> None:
    with psycopg.connect(app_url(app_database_url), autocommit=True) as conn, pytest.raises(
            (errors.InsufficientPrivilege, errors.InvalidSchemaName)):
        conn.execute(statement)


def test_the_deploy_sets_the_app_password_as_a_scram_verifier(empty_database: str,
                                                               db: psycopg.Connection[tuple[object, ...]]) -> None:
    from tickets.store.migrate import apply_migrations

    password = "a-generated-password-0123456789"
    apply_migrations(empty_database, app_role_password=password)
    verifier = db.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (APP_ROLE,)).fetchone()
    assert verifier is not None
    assert scram_matches(str(verifier[0]), password)
    assert not scram_matches(str(verifier[0]), "another password")


def scram_matches(verifier: str, password: str) -> bool:
    """RFC 5802/7677: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>."""
    scheme, rest = verifier.split("$", 1)
    assert scheme == "SCRAM-SHA-256"
    params, keys = rest.split("$")
    iterations, salt = params.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(hashlib.sha256(client_key).digest()).decode(), stored_key)


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    """A new, empty database on the test cluster, as a fresh stack's cluster has."""
    name = f"fresh_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield psycopg.conninfo.make_conninfo(database_url, dbname=name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_migrations_leave_the_privileges_as_they_were_on_a_second_run(database_url: str,
                                                                      db: psycopg.Connection[Any]) -> None:
    from tickets.store.migrate import apply_migrations

    query = ("SELECT relname, relacl::text, pg_get_userbyid(relowner) FROM pg_class"
             " WHERE relnamespace = 'public'::regnamespace UNION ALL"
             " SELECT proname, proacl::text, pg_get_userbyid(proowner) FROM pg_proc"
             " WHERE pronamespace = 'public'::regnamespace ORDER BY 1, 2")
    before = db.execute(query).fetchall()
    assert apply_migrations(database_url) == []
    assert db.execute(query).fetchall() == before


def test_the_migrations_run_as_a_master_user_that_is_no_superuser(database_url: str) -> None:
    """As on Aurora, where the master user has CREATEROLE and owns the database but is no superuser:
    the migrations, the privileges and a second run (replacing what tickets_owner owns) all work."""
    from tickets.store.migrate import apply_migrations, function_files, migration_files

    master, database = f"master_{uuid.uuid4().hex[:8]}", f"fresh_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {master} LOGIN CREATEROLE CREATEDB")
        admin.execute(f"CREATE DATABASE {database} OWNER {master}")
    url = psycopg.conninfo.make_conninfo(database_url, user=master, dbname=database)
    try:
        assert len(apply_migrations(url, app_role_password="first-password-0123456789")) == (
            len(migration_files()) + len(function_files()))
        with psycopg.connect(url, autocommit=True) as conn:  # a release that changes a function
            conn.execute("DELETE FROM schema_functions WHERE file = '30_reservations'")
        assert apply_migrations(url) == ["functions/30_reservations"]
        with psycopg.connect(url) as conn:
            owners = conn.execute("SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc"
                                  " WHERE pronamespace = 'public'::regnamespace").fetchall()
            assert owners == [(OWNER_ROLE,)]
        app = psycopg.conninfo.make_conninfo(url, user=APP_ROLE)
        with psycopg.connect(app, autocommit=True) as conn:
            assert conn.execute("SELECT ready()").fetchone() == (True,)
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("SELECT count(*) FROM events")
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {database} WITH (FORCE)")
            admin.execute(f"DROP OWNED BY {master}")
            admin.execute(f"DROP ROLE {master}")
