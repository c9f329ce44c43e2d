"""Check-in at the door."""

from uuid import UUID

from tickets.models.common import ResponseModel, UtcDateTime


class CheckIn(ResponseModel):
    ticket_code: str
    checked_in_at: UtcDateTime
    event_id: UUID
