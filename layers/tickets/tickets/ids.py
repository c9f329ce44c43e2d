"""Path identifiers: a malformed id names nothing, so it is refused as not found."""

from __future__ import annotations

import uuid

from tickets.refusals import Refusal


def parse_id(value: str, *, not_found: str) -> uuid.UUID:
    """The UUID in a path, or the refusal `not_found` (a catalogue code) when it is not one."""
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise Refusal(not_found) from exc
