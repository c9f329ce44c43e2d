"""The refusal catalogue: every error code of the API, once, with its HTTP status and message.

The domain and the SQL functions speak in codes: a SQL function returns `{"outcome": "<code>",
...fields}`, the domain raises `Refusal("<code>", **fields)`, and only the HTTP edge
(tickets.edge.http) turns a refusal into a response, with the status and message found here.
The README's error table and ../shared/API.md are checked against this table by the tests
(tests/unit/test_refusals.py).

To add a refusal: add one `Kind` below, return its code from the SQL function or raise it in
the domain, and list it in the route's `refusals` (the OpenAPI responses follow).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Message = str | Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True)
class Kind:
    code: str
    status: int
    message: Message  # a sentence a person can act on; a function of the fields when it depends on them
    fields: tuple[str, ...] = ()  # what the error carries beside code and message
    retry_after: bool = False  # answered with Retry-After: the same request may succeed shortly
    missing_header: str | None = None  # the answer when a route's required header is absent (else validation_error)

    def render(self, fields: Mapping[str, Any]) -> str:
        return self.message(fields) if callable(self.message) else self.message

    @property
    def description(self) -> str:
        """For the OpenAPI file: the message, or what a message built from the fields says."""
        text = (self.message.__doc__ or "") if callable(self.message) else self.message
        carried = f" (with {', '.join(self.fields)})" if self.fields else ""
        return f"`{self.code}`{carried}: {text.strip()}"


def _seats_left(fields: Mapping[str, Any]) -> str:
    """Fewer seats are left in this tier than asked."""
    seats = fields["available_seats"]
    return f"Only {'1 seat is' if seats == 1 else f'{seats} seats are'} left in this tier."


def _limit(fields: Mapping[str, Any]) -> str:
    """A limit of the tier or the event (named by `limit`) would be exceeded."""
    if fields["limit"] == "max_per_order":
        return f"At most {fields['max_per_order']} seats can be reserved in one order."
    if fields["limit"] == "max_holds_per_ip":
        return f"At most {fields['max_holds_per_ip']} live holds per network address for this event."
    return f"At most {fields['max_per_customer']} seats per customer; {fields['remaining']} remain for you."


def _seats_taken(fields: Mapping[str, Any]) -> str:
    """Some of the seats named are held or sold (listed in `unavailable_seats`); nothing was held."""
    return (f"Not available now: {', '.join(fields['unavailable_seats'])}; nothing was held. "
            "Choose other seats or leave seats out for the best available.")


def _invalid(fields: Mapping[str, Any]) -> str:
    """A field is missing, unknown, of the wrong type or out of range (named in `details`)."""
    names = sorted({str(detail["field"]) for detail in fields.get("details", [])})
    return f"Invalid request: check {', '.join(names)}." if names else "Invalid request."


CATALOGUE: dict[str, Kind] = {kind.code: kind for kind in (
    # 400
    Kind("malformed_json", 400, "The request body is not valid JSON."),
    Kind("idempotency_key_required", 400,
         "This call needs an Idempotency-Key header (1-128 printable ASCII characters).",
         missing_header="Idempotency-Key"),
    Kind("invalid_idempotency_key", 400, "The Idempotency-Key header must be 1-128 printable ASCII characters."),
    # 401
    Kind("unauthorized", 401, "A valid organizer token is required: send Authorization: Bearer <token>."),
    # 402
    Kind("payment_declined", 402, "The payment was declined; the hold stays until it expires or is cancelled."),
    # 403
    Kind("sales_closed", 403, "Sales for this event are not open now.", ("sales_start_at", "sales_end_at")),
    Kind("admission_required", 403, "This event has a waiting room: join its queue and reserve with the "
         "X-Admission-Token it gives once admitted."),
    Kind("admission_invalid", 403, "The X-Admission-Token is not one this event's waiting room gave."),
    Kind("admission_expired", 403, "This admission has lapsed; join the queue again."),
    # 404
    Kind("not_found", 404, "No such route."),
    Kind("event_not_found", 404, "No event has this id."),
    Kind("tier_not_found", 404, "This event has no tier with this tier_id."),
    Kind("reservation_not_found", 404, "No reservation has this id (or the X-Reservation-Secret is wrong)."),
    Kind("ticket_not_found", 404, "No ticket has this code."),
    Kind("offer_not_found", 404, "This event has no offer with this code."),
    Kind("queue_entry_not_found", 404, "This event's queue has no entry with this queue_token."),
    # 409
    Kind("sold_out", 409, "This tier is sold out.", ("available_seats",)),
    Kind("insufficient_inventory", 409, _seats_left, ("available_seats",)),
    Kind("reservation_confirmed", 409, "This reservation is already confirmed."),
    Kind("reservation_cancelled", 409, "This reservation was cancelled."),
    Kind("already_checked_in", 409, "This ticket was already checked in.", ("checked_in_at",)),
    Kind("ticket_void", 409, "This ticket is void and cannot be admitted."),
    Kind("offer_exhausted", 409, "Seats are free, but this offer has no claims left; reserve without it."),
    Kind("offer_code_taken", 409, "This event already has an offer with this code."),
    Kind("seats_unavailable", 409, _seats_taken, ("unavailable_seats",)),
    Kind("request_in_progress", 409, "A request with this Idempotency-Key is still being processed; retry shortly.",
         retry_after=True),
    # 410
    Kind("reservation_expired", 410, "This hold has expired; reserve again."),
    # 413
    Kind("payload_too_large", 413, "The request body is larger than 64 KiB."),
    # 422
    Kind("validation_error", 422, _invalid, ("details",)),
    Kind("limit_exceeded", 422, _limit,
         ("limit", "max_per_order", "max_per_customer", "max_holds_per_ip", "remaining")),
    Kind("idempotency_key_reused", 422, "This Idempotency-Key was used with a different request body."),
    Kind("offer_not_applicable", 422, "This offer does not cover this tier, or it is no longer valid."),
    Kind("not_assigned_seating", 422, "This tier has no assigned seats: it sells general admission."),
    Kind("no_waiting_room", 422, "This event has no waiting room: reserve directly."),
    # 5xx: the only ones the contract allows, besides internal_error, which is always a defect.
    Kind("internal_error", 500, "An unexpected error occurred; it has been logged."),
    Kind("payment_error", 502, "The payment could not be processed; nothing was charged. Retry."),
    Kind("unavailable", 503, "A backing service is unavailable; retry shortly.", retry_after=True),
)}

# Every route can answer these: the edge's guards and the store being down.
COMMON = ("malformed_json", "payload_too_large", "validation_error", "unavailable")


class Refusal(Exception):
    """The domain's no: a catalogue code and the fields that qualify it (never an HTTP status)."""

    def __init__(self, code: str, **fields: Any) -> None:
        self.kind = CATALOGUE[code]  # an unknown code is a programming error, caught by the tests
        self.code = code
        self.fields = {name: value for name, value in fields.items() if value is not None}
        super().__init__(code)

    @property
    def message(self) -> str:
        return self.kind.render(self.fields)

    @classmethod
    def from_outcome(cls, result: Mapping[str, Any]) -> Refusal:
        """A SQL function's refusal: {"outcome": code, ...fields}; fields the kind does not carry are dropped."""
        kind = CATALOGUE[result["outcome"]]
        return cls(kind.code, **{name: result[name] for name in kind.fields if name in result})


def statuses(codes: Iterable[str]) -> dict[int, list[str]]:
    """The codes grouped by HTTP status, for a route's documented responses."""
    grouped: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        grouped.setdefault(CATALOGUE[code].status, []).append(code)
    return dict(sorted(grouped.items()))
