"""Request and response models: the single source of the API's shapes (and its OpenAPI)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    StrictStr,
    model_validator,
)


def rfc3339_utc(value: datetime | str) -> str:
    """A time as the API writes it: RFC 3339 in UTC with a Z (PostgreSQL's JSON gives +00:00)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcDateTime = Annotated[datetime, PlainSerializer(rfc3339_utc, return_type=str)]


def _representable_in_utc(value: datetime) -> datetime:
    """A time whose UTC date falls outside years 1-9999 could be stored but never read back."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time in UTC must fall within years 1 to 9999") from None


# A time given in a request: with an offset, and within years 1-9999 once shifted to UTC.
Moment = Annotated[AwareDatetime, AfterValidator(_representable_in_utc)]
CurrencyCode = Annotated[StrictStr, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
# PostgreSQL text cannot hold NUL, so it is refused here as a validation error rather than failing in SQL.
NO_NUL = r"^[^\x00]*$"
Name = Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=NO_NUL)]
MinorUnits = Annotated[StrictInt, Field(ge=0, le=10**12, description="Integer minor units: 2500 is 25.00")]


class Model(BaseModel):
    """Every model of the API. Its validator and serializer are built on first use (defer_build),
    not at import: a function's cold start builds only the few models its requests touch."""

    model_config = ConfigDict(defer_build=True)


# ----- requests -----

class RequestModel(Model):
    """A request body: a field the call does not know is a validation error, never ignored."""

    model_config = ConfigDict(extra="forbid")


class ResponseModel(Model):
    """A response built by a SQL function field by field: a field it sends that the model lacks fails the tests."""

    model_config = ConfigDict(extra="forbid")


# Assigned seats: a seat's label ("A-12"), a row's label ("A").
SeatLabel = Annotated[StrictStr, Field(min_length=1, max_length=40, pattern=NO_NUL)]
RowLabel = Annotated[StrictStr, Field(min_length=1, max_length=20, pattern=NO_NUL)]
# The most assigned seats one event may have (each is a row of the database, written when the event is created).
MAX_ASSIGNED_SEATS = 50_000


class SeatRow(RequestModel):
    row: RowLabel
    seats: Annotated[StrictInt, Field(ge=1, le=1000, description="Seats ROW-1 to ROW-<seats>")]


class TierCreate(RequestModel):
    name: Name
    capacity: Annotated[StrictInt, Field(
        ge=1, le=1_000_000, description="Required for general admission; for assigned seating, the number of seats "
                                        "(derived when absent)")] | None = None
    price: MinorUnits
    max_per_order: Annotated[StrictInt, Field(ge=1, le=100)] = 10
    seating: Literal["general", "assigned"] = "general"
    rows: Annotated[list[SeatRow], Field(min_length=1, max_length=1000, description=(
        "Assigned seating: rows front to back; row A with 20 seats names A-1 to A-20"))] | None = None
    seats: Annotated[list[SeatLabel], Field(min_length=1, max_length=10_000, description=(
        "Assigned seating: seat labels in order of preference, each a row-less seat"))] | None = None

    @model_validator(mode="after")
    def _seating_is_whole(self) -> TierCreate:
        if self.seating == "general":
            if self.rows is not None or self.seats is not None:
                raise ValueError('rows and seats need "seating": "assigned"')
            if self.capacity is None:
                raise ValueError("capacity is required")
            return self
        if (self.rows is None) == (self.seats is None):
            raise ValueError("an assigned-seating tier needs exactly one of rows and seats")
        labels = self.seat_labels()
        if len(set(labels)) != len(labels):
            repeated = sorted({label for label in labels if labels.count(label) > 1}) if len(labels) < 2000 else []
            raise ValueError("seat labels must be unique within the tier" + (f": {', '.join(repeated[:5])}"
                                                                          if repeated else ""))
        if self.capacity is not None and self.capacity != len(labels):
            raise ValueError(f"capacity {self.capacity} differs from the {len(labels)} seats")
        self.capacity = len(labels)
        return self

    def seat_labels(self) -> list[str]:
        """The seats' labels in order of preference (empty for general admission)."""
        if self.rows is not None:
            return [f"{row.row}-{number}" for row in self.rows for number in range(1, row.seats + 1)]
        return list(self.seats or [])


class QuotaCreate(RequestModel):
    name: Name
    capacity: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    tiers: Annotated[list[Name], Field(min_length=1, max_length=20, description="Names of this request's tiers")]


class WaitingRoomSettings(RequestModel):
    admit_per_minute: Annotated[StrictInt, Field(ge=1, le=100_000, description=(
        "Entries admitted per minute at most, spread evenly (in any 10 s at most admit_per_minute / 6 + 1)"))]
    admission_seconds: Annotated[StrictInt, Field(ge=30, le=3600, description=(
        "How long an admission lets its holder reserve"))]


class EventCreate(RequestModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "Spring Gala", "venue": "Hall A", "starts_at": "2030-04-01T19:00:00Z", "currency": "EUR",
        "hold_seconds": 600, "max_per_customer": 8,
        "tiers": [{"name": "General", "capacity": 500, "price": 2500, "max_per_order": 6}]}]})

    name: Name
    venue: Annotated[StrictStr, Field(max_length=200, pattern=NO_NUL)] | None = None
    starts_at: Moment
    currency: CurrencyCode = "EUR"
    hold_seconds: Annotated[StrictInt, Field(ge=30, le=3600)] = 600
    max_per_customer: Annotated[StrictInt, Field(ge=1, le=10_000)] | None = None
    max_holds_per_ip: Annotated[StrictInt, Field(
        ge=1, le=10_000, description="Live holds from one source IP on this event; no limit when absent")] | None = None
    sales_start_at: Moment | None = None
    sales_end_at: Moment | None = None
    tiers: Annotated[list[TierCreate], Field(min_length=1, max_length=20)]
    quotas: Annotated[list[QuotaCreate], Field(
        max_length=20, description="Capacity shared by several tiers; the smaller of a tier's and a quota's binds",
    )] = []
    waiting_room: WaitingRoomSettings | None = Field(None, description=(
        "A queue in front of the reservations: reserve then needs X-Admission-Token (API.md, Waiting room)"))

    @model_validator(mode="after")
    def _tier_names_are_unique(self) -> EventCreate:
        names = [tier.name for tier in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique within the event")
        return self

    @model_validator(mode="after")
    def _assigned_seats_within_bounds(self) -> EventCreate:
        if sum(tier.capacity or 0 for tier in self.tiers if tier.seating == "assigned") > MAX_ASSIGNED_SEATS:
            raise ValueError(f"an event has at most {MAX_ASSIGNED_SEATS} assigned seats")
        return self

    @model_validator(mode="after")
    def _quotas_name_known_tiers(self) -> EventCreate:
        names = {tier.name for tier in self.tiers}
        for quota in self.quotas:
            unknown = sorted(set(quota.tiers) - names)
            if unknown:
                raise ValueError(f"quota {quota.name!r} names unknown tiers: {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _sales_window_is_ordered(self) -> EventCreate:
        if self.sales_start_at and self.sales_end_at and self.sales_end_at <= self.sales_start_at:
            raise ValueError("sales_end_at must be after sales_start_at")
        return self


OfferCode = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{3,32}$",
                                       description="3 to 32 of A-Z a-z 0-9 _ -; matched case-insensitively")]


class ReserveRequest(RequestModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"quantity": 2}]})

    quantity: Annotated[StrictInt, Field(
        ge=1, le=100, description="1 to the tier's max_per_order; with seats, their number (may be left out)",
    )] | None = None
    tier_id: UUID | None = Field(default=None, description="May be left out when the event has one tier")
    offer_code: OfferCode | None = None
    seats: Annotated[list[SeatLabel], Field(min_length=1, max_length=100, description=(
        "Assigned seating: the seats to hold, all or none; without it, the best available"))] | None = None

    @model_validator(mode="after")
    def _quantity_agrees_with_seats(self) -> ReserveRequest:
        if self.seats is None:
            if self.quantity is None:
                raise ValueError("quantity is required (or name the seats)")
            return self
        if len(set(self.seats)) != len(self.seats):
            raise ValueError("seats must not repeat a seat")
        if self.quantity is not None and self.quantity != len(self.seats):
            raise ValueError(f"quantity {self.quantity} differs from the {len(self.seats)} seats named")
        return self

    @property
    def seat_count(self) -> int:
        """The seats asked for: the quantity, or the number of seats named."""
        return len(self.seats) if self.seats is not None else int(self.quantity or 0)


class OfferCreate(RequestModel):
    code: OfferCode
    percent_off: Annotated[StrictInt, Field(ge=1, le=100)] | None = None
    amount_off: Annotated[StrictInt, Field(ge=1, le=10**12, description="Minor units per seat")] | None = None
    max_claims: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    tier_ids: Annotated[list[UUID], Field(min_length=1, max_length=20)] | None = Field(
        None, description="All tiers when absent")
    valid_until: Moment | None = None

    @model_validator(mode="after")
    def _one_discount_kind(self) -> OfferCreate:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("give exactly one of percent_off and amount_off")
        return self

    @model_validator(mode="after")
    def _valid_until_ahead(self) -> OfferCreate:
        if self.valid_until is not None and self.valid_until <= datetime.now(UTC):
            raise ValueError("valid_until must be in the future")
        return self


class ConfirmRequest(RequestModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"payment_token": "tok_visa"}]})

    payment_token: Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=NO_NUL)]


# ----- responses -----

class Tier(ResponseModel):
    tier_id: UUID
    name: str
    capacity: int
    price: int
    currency: str
    max_per_order: int
    available_seats: int
    seating: Literal["general", "assigned"] = "general"


class Quota(ResponseModel):
    quota_id: UUID
    name: str
    capacity: int
    tier_ids: list[UUID]


class WaitingRoom(ResponseModel):
    admit_per_minute: int
    admission_seconds: int


class Event(ResponseModel):
    event_id: UUID
    name: str
    venue: str | None
    starts_at: UtcDateTime
    currency: str
    hold_seconds: int
    max_per_customer: int | None
    max_holds_per_ip: int | None
    sales_start_at: UtcDateTime | None
    sales_end_at: UtcDateTime | None
    created_at: UtcDateTime
    waiting_room: WaitingRoom | None = None
    tiers: list[Tier]
    quotas: list[Quota] = []


class TierAvailability(ResponseModel):
    tier_id: UUID
    name: str
    available_seats: int
    price: int
    currency: str
    max_per_order: int


class QuotaAvailability(ResponseModel):
    quota_id: UUID
    name: str
    capacity: int
    available_seats: int


class Availability(ResponseModel):
    event_id: UUID
    available: bool
    available_seats: int
    tiers: list[TierAvailability]
    quotas: list[QuotaAvailability] = []


class Offer(ResponseModel):
    offer_id: UUID
    code: str
    percent_off: int | None = Field(None, exclude_if=lambda value: value is None)
    amount_off: int | None = Field(None, exclude_if=lambda value: value is None)
    max_claims: int
    claims_left: int
    tier_ids: list[UUID]
    valid_until: UtcDateTime | None


class Ticket(ResponseModel):
    ticket_code: str
    seat: str | None = Field(None, exclude_if=lambda seat: seat is None, description="Assigned seating: its seat")


class Seat(ResponseModel):
    seat: str
    row: str | None
    number: int | None
    status: Literal["available", "held", "sold"] = Field(description="held: by a live hold")


class SeatMap(ResponseModel):
    tier_id: UUID
    seats: list[Seat]


class Payment(ResponseModel):
    transaction_id: str
    status: Literal["captured"]
    amount: int
    currency: str


ReservationStatus = Literal["held", "confirmed", "expired", "cancelled"]


class Reservation(ResponseModel):
    reservation_id: UUID
    booking_reference: str
    event_id: UUID
    tier_id: UUID
    quantity: int
    seats: list[str] | None = Field(None, exclude_if=lambda seats: seats is None,
                                    description="Assigned seating: the reservation's seats")
    status: ReservationStatus
    expires_at: UtcDateTime
    total_amount: int
    currency: str
    offer_code: str | None = None
    discount_amount: int = 0
    payment_status: Literal["pending", "captured", "failed", "refunded"] = Field(
        description="refunded: a payment captured after the hold could no longer be sold was given back")
    created_at: UtcDateTime
    confirmed_at: UtcDateTime | None = None
    cancelled_at: UtcDateTime | None = None
    tickets: list[Ticket] = []
    payment: Payment | None = None
    reservation_secret: str | None = Field(
        None, exclude_if=lambda secret: secret is None,
        description="Only in the reserve call's answer (and its replay): send it as X-Reservation-Secret")


QueueState = Literal["waiting", "admitted", "expired", "sold_out"]


class QueueEntry(ResponseModel):
    queue_token: str = Field(description="Poll GET /events/{event_id}/queue/{queue_token} with it")
    state: QueueState
    position: int | None = Field(None, description="waiting: entries admitted before this one, plus 1")
    estimated_wait_seconds: int | None = Field(None, description="waiting: seconds until admission at this pace")
    admission_token: str | None = Field(
        None, exclude_if=lambda token: token is None,
        description="admitted: send it as X-Admission-Token on reserve until admission_expires_at")
    admission_expires_at: UtcDateTime | None = Field(None, exclude_if=lambda moment: moment is None)


class QueueStatistics(ResponseModel):
    waiting: int
    admitted: int
    expired: int
    sold_out: int
    admit_per_minute: int


class CheckIn(ResponseModel):
    ticket_code: str
    checked_in_at: UtcDateTime
    event_id: UUID


class Health(Model):
    status: Literal["ok"]


class ExpiryResult(Model):
    expired: int
    # Payment intents settled by reconciliation: sold (tickets issued), refunded, uncharged.
    settled: dict[str, int] = {}


class ErrorDetail(Model):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="snake_case error code")
    message: str = Field(description="A sentence a person can act on")


class ErrorResponse(Model):
    error: ErrorDetail
