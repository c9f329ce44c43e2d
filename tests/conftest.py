"""Shared fixtures: a real PostgreSQL (throwaway unless DATABASE_URL is set) and moto's DynamoDB."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from localstage.dynamodb import IDEMPOTENCY_TABLE, LocalDynamoDB
from localstage.postgres import PostgresCluster

ADMIN_TOKEN = "test-admin-token-0123456789"

# The handlers read these at import time, as they would in Lambda.
_dynamodb = LocalDynamoDB()
os.environ.update({
    "AWS_ENDPOINT_URL_DYNAMODB": _dynamodb.endpoint_url,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE,
    "TICKETS_ADMIN_TOKEN": ADMIN_TOKEN,
    "PAYMENT_PROVIDER": "test",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "Tickets",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
})


TABLES = "tickets, payments, reservations, tier_inventory, tiers, events"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """DATABASE_URL when given, else a throwaway cluster; migrated either way."""
    from tickets.store.migrate import apply_migrations

    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    cluster = None
    if not url:
        cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="tickets-test-pg-")) / "data", durable=False)
        url = cluster.start()
    os.environ["DATABASE_URL"] = url
    from tickets.settings import settings

    settings.cache_clear()  # the environment changed under the settings read at import
    apply_migrations(url)
    yield url
    if cluster is not None:
        cluster.destroy()
        shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    yield _dynamodb.start()
    _dynamodb.stop()


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A direct connection for assertions; the tables are emptied before each test."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} CASCADE")
        yield conn


@pytest.fixture
def api(db: psycopg.Connection[tuple[object, ...]], dynamodb_endpoint: str):  # type: ignore[no-untyped-def]
    from tests.support.api import Api

    return Api(ADMIN_TOKEN)


# The most threads a race test runs at once; each gets its own execution environment.
RACE_ENVIRONMENTS = 60


@pytest.fixture(scope="session")
def _lambda_environments(database_url: str, dynamodb_endpoint: str):  # type: ignore[no-untyped-def]
    from tests.integration.environments import LambdaEnvironments

    environments = LambdaEnvironments(RACE_ENVIRONMENTS, ADMIN_TOKEN)
    yield environments
    environments.stop()


@pytest.fixture
def environments(db: psycopg.Connection[tuple[object, ...]], _lambda_environments):  # type: ignore[no-untyped-def]
    """Separate Lambda execution environments (processes), for tests that race the handlers:
    `environments[n]` is an `Api` whose calls run in environment n only."""
    return _lambda_environments


@pytest.fixture
def key() -> str:
    """A fresh Idempotency-Key."""
    return f"test-{uuid.uuid4()}"


class SettingsEnvironment:
    """monkeypatch's setenv/delenv for variables of tickets.settings, which the functions read once:
    each change drops the settings read so far, as a new execution environment would start afresh."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from tickets.settings import settings

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
