"""Path identifiers: a malformed id names nothing, so it is reported as not found."""

from __future__ import annotations

import uuid

from tickets.refusals import NotFound


def parse_id(value: str, *, code: str, message: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFound(message, code=code) from exc
