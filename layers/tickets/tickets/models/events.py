"""Events, their tiers, quotas and waiting room; availability and seat maps."""

from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import ConfigDict, Field, StrictInt, StrictStr, model_validator

from tickets.models.common import (
    NO_NUL,
    CurrencyCode,
    MinorUnits,
    Moment,
    Name,
    RequestModel,
    ResponseModel,
    RowLabel,
    SeatLabel,
    UtcDateTime,
)

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
    def _seating_is_whole(self) -> Self:
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
    def _tier_names_are_unique(self) -> Self:
        names = [tier.name for tier in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique within the event")
        return self

    @model_validator(mode="after")
    def _assigned_seats_within_bounds(self) -> Self:
        if sum(tier.capacity or 0 for tier in self.tiers if tier.seating == "assigned") > MAX_ASSIGNED_SEATS:
            raise ValueError(f"an event has at most {MAX_ASSIGNED_SEATS} assigned seats")
        return self

    @model_validator(mode="after")
    def _quotas_name_known_tiers(self) -> Self:
        names = {tier.name for tier in self.tiers}
        for quota in self.quotas:
            unknown = sorted(set(quota.tiers) - names)
            if unknown:
                raise ValueError(f"quota {quota.name!r} names unknown tiers: {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _sales_window_is_ordered(self) -> Self:
        if self.sales_start_at and self.sales_end_at and self.sales_end_at <= self.sales_start_at:
            raise ValueError("sales_end_at must be after sales_start_at")
        return self


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


class Seat(ResponseModel):
    seat: str
    row: str | None
    number: int | None
    status: Literal["available", "held", "sold"] = Field(description="held: by a live hold")


class SeatMap(ResponseModel):
    tier_id: UUID
    seats: list[Seat]
