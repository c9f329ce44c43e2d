"""All that localstage knows of this project: its schema, its demo event, its tables' names, the
settings its functions take locally in place of AWS's and the examples the stage prints.

The rest of localstage reads template.yaml. The demo event is what the sample events (events/*.json,
`make invoke`) and the README's curl examples refer to; it is created by the domain function
`POST /events` calls, so it is an event like any other.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tickets.domain.events import create_event
from tickets.models.events import EventCreate
from tickets.settings import Settings, settings
from tickets.store import db
from tickets.store.migrate import apply_migrations

# template.yaml's tables, locally, under the names the layer's settings default to: a process that
# sets no IDEMPOTENCY_TABLE (the tests) uses the table the stage creates.
TABLE_NAMES = {"IdempotencyTable": str(Settings.model_fields["idempotency_table"].default),
               "QueueTable": str(Settings.model_fields["queue_table"].default)}

_VARIABLES = {name: str(field.alias) for name, field in Settings.model_fields.items()}  # field -> variable
ADMIN_TOKEN_VARIABLE = _VARIABLES["admin_token"]  # also how the stage's token is chosen
ADMISSION_SECRET_VARIABLE = _VARIABLES["admission_secret"]
# The key of the waiting room's admission tokens (a Secrets Manager secret on AWS): the developer's
# when set, else one drawn for this process, which every function it starts shares.
_ADMISSION_SECRET = os.environ.get(ADMISSION_SECRET_VARIABLE) or secrets.token_urlsafe(32)

DEMO_EVENT_ID = "11111111-1111-4111-8111-111111111111"
DEMO_TIER_ID = "22222222-2222-4222-8222-222222222222"
DEMO_RESERVATION_ID = "33333333-3333-4333-8333-333333333333"
DEMO_TICKET_CODE = "DEMO0000000000000000000000000001"
DEMO_ADMIN_TOKEN = "local-admin-token"  # noqa: S105 - a public demo value: the token in the sample events (make invoke)
DEMO_EVENT = EventCreate.model_validate({
    "name": "Demo Night", "venue": "Local Stage", "starts_at": "2030-01-01T20:00:00Z", "currency": "EUR",
    "hold_seconds": 600, "tiers": [{"name": "General", "capacity": 100, "price": 2500, "max_per_order": 10}]})
# A small hall with assigned seats: rows A to E of 10 (A-1 ... E-10).
DEMO_SEATED_EVENT_ID = "44444444-4444-4444-8444-444444444444"
DEMO_SEATED_TIER_ID = "55555555-5555-4555-8555-555555555555"
DEMO_SEATED_EVENT = EventCreate.model_validate({
    "name": "Demo Recital", "venue": "Local Stage", "starts_at": "2030-01-02T20:00:00Z", "currency": "EUR",
    "hold_seconds": 600, "tiers": [{"name": "Stalls", "seating": "assigned", "price": 4000, "max_per_order": 10,
                                    "rows": [{"row": row, "seats": 10} for row in "ABCDE"]}]})


def local_settings(database_url: str, admin_token: str) -> dict[str, str]:
    """The functions' settings that differ locally: where AWS has RDS Proxy with IAM sign-in and
    Secrets Manager secrets, the stage has a database URL, a token and an admission key of its own;
    PAYMENT_PROVIDER passes through from the developer's environment."""
    env = {_VARIABLES["database_url"]: database_url, ADMIN_TOKEN_VARIABLE: admin_token,
           ADMISSION_SECRET_VARIABLE: os.environ.get(ADMISSION_SECRET_VARIABLE) or _ADMISSION_SECRET}
    provider = _VARIABLES["payment_provider"]
    if os.environ.get(provider):
        env[provider] = os.environ[provider]
    return env


def examples(base_url: str, token: str) -> str:
    """The curl commands the stage's banner suggests."""
    create = ('{"name":"Spring Gala","starts_at":"2030-04-01T19:00:00Z","tiers":'
              '[{"name":"General","capacity":100,"price":2500}]}')
    return f"""  curl -s {base_url}/health
  curl -s -X POST {base_url}/events -H 'Authorization: Bearer {token}' \\
       -H 'Content-Type: application/json' -d '{create}'
  curl -s -X POST {base_url}/events/{DEMO_EVENT_ID}/reservations -H 'Idempotency-Key: try-1' \\
       -H 'Content-Type: application/json' -d '{{"quantity":2}}'
  curl -s {base_url}/events/{DEMO_EVENT_ID}/availability
  curl -s -X POST {base_url}/events/{DEMO_SEATED_EVENT_ID}/reservations -H 'Idempotency-Key: try-2' \
       -H 'Content-Type: application/json' -d '{{"seats":["C-5","C-6"]}}'
  curl -s {base_url}/events/{DEMO_SEATED_EVENT_ID}/tiers/{DEMO_SEATED_TIER_ID}/seats"""


def prepare_database(database_url: str) -> list[str]:
    """Applies the migrations, then creates the demo event unless it exists; returns the migrations applied now."""
    applied = apply_migrations(database_url)
    with _store_at(database_url):
        create_event(DEMO_EVENT, event_id=uuid.UUID(DEMO_EVENT_ID), tier_ids=[uuid.UUID(DEMO_TIER_ID)])
        create_event(DEMO_SEATED_EVENT, event_id=uuid.UUID(DEMO_SEATED_EVENT_ID),
                     tier_ids=[uuid.UUID(DEMO_SEATED_TIER_ID)])
        db.connection().close()
    return applied


@contextmanager
def _store_at(database_url: str) -> Iterator[None]:
    """The layer's store pointed at database_url for a while (it reads DATABASE_URL, as the functions do)."""
    variable = _VARIABLES["database_url"]
    previous = os.environ.get(variable)
    os.environ[variable] = database_url
    settings.cache_clear()
    try:
        yield
    finally:
        if previous is None:
            del os.environ[variable]
        else:
            os.environ[variable] = previous
        settings.cache_clear()
