"""Readiness: the database and the idempotency table both answer."""

from __future__ import annotations

from tickets import db
from tickets.errors import ServiceUnavailable
from tickets.idempotency import persistence_store


def check() -> None:
    with db.database() as conn:
        conn.execute("SELECT 1")
    try:
        persistence_store.client.describe_table(TableName=persistence_store.table_name)
    except Exception as exc:
        raise ServiceUnavailable("The idempotency table does not answer; retry shortly.") from exc
