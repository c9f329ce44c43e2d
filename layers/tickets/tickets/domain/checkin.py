"""Check-in: a ticket is admitted once."""

from __future__ import annotations

import re

from tickets.models import CheckIn
from tickets.refusals import Conflict, NotFound
from tickets.store import db

TICKET_CODE = re.compile(r"[A-Za-z0-9]{1,64}")


def check_in(ticket_code: str) -> CheckIn:
    if not TICKET_CODE.fullmatch(ticket_code):
        raise NotFound("No ticket has this code.", code="ticket_not_found")
    result = db.call("check_in_ticket(%s)", (ticket_code,))
    outcome = result["outcome"]
    if outcome == "ticket_not_found":
        raise NotFound("No ticket has this code.", code="ticket_not_found")
    ticket = CheckIn.model_validate(result["ticket"]) if outcome != "ticket_void" else None
    if outcome == "already_checked_in":
        assert ticket is not None
        raise Conflict("This ticket was already checked in.", code="already_checked_in",
                       checked_in_at=ticket.model_dump(mode="json")["checked_in_at"])
    if outcome == "ticket_void":
        raise Conflict("This ticket is void and cannot be admitted.", code="ticket_void")
    assert ticket is not None
    return ticket
