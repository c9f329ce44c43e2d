"""Readiness: the database and the idempotency table both answer."""

from __future__ import annotations

from tickets.store import db, idempotency_records


def check() -> None:
    """Raises StoreUnavailable unless both stores answer."""
    db.call("ready")
    if not idempotency_records.ready():
        raise db.StoreUnavailable("the idempotency table does not answer")
