"""Check-in: a ticket is admitted once."""

from __future__ import annotations

import re
import uuid

from tickets.models.checkin import CheckIn
from tickets.models.common import rfc3339_utc
from tickets.refusals import Refusal
from tickets.store import db

TICKET_CODE = re.compile(r"[A-Za-z0-9]{1,64}")
CHECK_IN_REFUSALS = ("ticket_not_found", "already_checked_in", "ticket_void")


def check_in(ticket_code: str) -> CheckIn:
    if not TICKET_CODE.fullmatch(ticket_code):
        raise Refusal("ticket_not_found")
    result = db.call("check_in_ticket", ticket_code, uuid.uuid4())
    if result["outcome"] == "already_checked_in":
        # The first scan's time, in the same form as the admitted answer gave it.
        raise Refusal("already_checked_in", checked_in_at=rfc3339_utc(result["checked_in_at"]))
    if result["outcome"] != "checked_in":
        raise Refusal.from_outcome(result)
    return CheckIn.model_validate(result["ticket"])
