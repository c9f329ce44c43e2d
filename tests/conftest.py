"""Shared fixtures: the local runtime's PostgreSQL (throwaway unless TEST_DATABASE_URL or DATABASE_URL
is set) and DynamoDB, and its Lambda environments for the races.

The handlers use TEST_DATABASE_URL or DATABASE_URL; the tests' own connections (assertions, locks held on
purpose, databases of their own) use DIRECT_DATABASE_URL when it is set: `make test-pgbouncer` runs the
suite with the handlers behind PgBouncer in transaction pooling and the tests beside it
(localstage.pgbouncer)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from localstage.runtime import Backends, LocalBackends, close_pools, function_pools
from localstage.template import load_template
from localstage.workers import FunctionPool
from tests.support.api import Api
from tickets.settings import settings

ADMIN_TOKEN = "test-admin-token-0123456789"
TABLES = ("tickets, payment_intents, payments, reservations, offer_tiers, offers, quota_tiers, counter_shares,"
          " counters, quotas, seat_fronts, seats, tiers, events")
# The most calls a race test makes at once; each runs in an execution environment of its own.
RACE_ENVIRONMENTS = 60

_local = LocalBackends(load_template(), durable=False,  # a throwaway cluster, unless a database is given
                       database_url=os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL"))
_DIRECT_URL = os.environ.get("DIRECT_DATABASE_URL")
# The handlers read these at import time, as they would in Lambda.
os.environ.update({
    "AWS_ENDPOINT_URL_DYNAMODB": _local.dynamodb_endpoint,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "TICKETS_ADMIN_TOKEN": ADMIN_TOKEN,
    "TICKETS_ADMISSION_SECRET": "test-admission-secret-0123456789",
    "PAYMENT_PROVIDER": "test",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "Tickets",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
})


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    """PostgreSQL, migrated and seeded, and DynamoDB with the template's tables, for the whole session."""
    with _local as started:
        os.environ["DATABASE_URL"] = started.database_url
        settings.cache_clear()  # the environment changed under the settings read so far
        yield started


@pytest.fixture(scope="session")
def app_database_url(backends: Backends) -> str:
    """The database as the handlers reach it (behind PgBouncer in `make test-pgbouncer`)."""
    return backends.database_url


@pytest.fixture(scope="session")
def database_url(backends: Backends) -> str:
    """The database as the tests reach it for their own connections."""
    return _DIRECT_URL or backends.database_url


@pytest.fixture(scope="session")
def dynamodb_endpoint(backends: Backends) -> str:
    return backends.dynamodb_endpoint


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A direct connection for assertions; the tables are emptied before each test."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} CASCADE")
        yield conn


@pytest.fixture
def api(db: psycopg.Connection[tuple[object, ...]], dynamodb_endpoint: str) -> Api:
    """The API, its functions run in this process."""
    return Api(ADMIN_TOKEN)


@pytest.fixture(scope="session")
def _race_pools(backends: Backends) -> Iterator[dict[str, FunctionPool]]:
    pools = function_pools(load_template(), backends, admin_token=ADMIN_TOKEN, max_workers=RACE_ENVIRONMENTS)
    yield pools
    close_pools(pools)


@pytest.fixture
def environments(db: psycopg.Connection[tuple[object, ...]], _race_pools: dict[str, FunctionPool]) -> Api:
    """The API with each call in a Lambda execution environment (a process) of its own, for tests that
    race the handlers: the local stage's pools, one per function."""
    return Api(ADMIN_TOKEN, _race_pools)


@pytest.fixture
def key() -> str:
    """A fresh Idempotency-Key."""
    return f"test-{uuid.uuid4()}"


class SettingsEnvironment:
    """monkeypatch's setenv/delenv for variables of tickets.settings, which the functions read once:
    each change drops the settings read so far, as a new execution environment would start afresh."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self._clear = settings.cache_clear

    def setenv(self, name: str, value: str) -> None:
        self._monkeypatch.setenv(name, value)
        self._clear()

    def delenv(self, name: str) -> None:
        self._monkeypatch.delenv(name, raising=False)
        self._clear()


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[SettingsEnvironment]:
    environment = SettingsEnvironment(monkeypatch)
    yield environment
    monkeypatch.undo()
    environment._clear()
