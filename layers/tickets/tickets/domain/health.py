"""Readiness: the database and the idempotency table both answer."""

from __future__ import annotations

from tickets.edge.idempotency import persistence_store
from tickets.refusals import ServiceUnavailable
from tickets.store import db


def check() -> None:
    with db.database() as conn:
        conn.execute("SELECT 1")
    try:
        persistence_store.client.describe_table(TableName=persistence_store.table_name)
    except Exception as exc:
        raise ServiceUnavailable("The idempotency table does not answer; retry shortly.") from exc
