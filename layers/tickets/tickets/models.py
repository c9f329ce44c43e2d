"""Request and response models: the single source of the API's shapes (and its OpenAPI)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, StrictInt, StrictStr, model_validator


def _rfc3339_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcDateTime = Annotated[datetime, PlainSerializer(_rfc3339_utc, return_type=str)]
CurrencyCode = Annotated[StrictStr, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
# PostgreSQL text cannot hold NUL, so it is refused here as a validation error rather than failing in SQL.
NO_NUL = r"^[^\x00]*$"
Name = Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=NO_NUL)]
MinorUnits = Annotated[StrictInt, Field(ge=0, le=10**12, description="Integer minor units: 2500 is 25.00")]


# ----- requests -----

class TierCreate(BaseModel):
    name: Name
    capacity: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    price: MinorUnits
    max_per_order: Annotated[StrictInt, Field(ge=1, le=100)] = 10


class EventCreate(BaseModel):
    name: Name
    venue: Annotated[StrictStr, Field(max_length=200, pattern=NO_NUL)] | None = None
    starts_at: AwareDatetime
    currency: CurrencyCode = "EUR"
    hold_seconds: Annotated[StrictInt, Field(ge=30, le=3600)] = 600
    max_per_customer: Annotated[StrictInt, Field(ge=1, le=10_000)] | None = None
    sales_start_at: AwareDatetime | None = None
    sales_end_at: AwareDatetime | None = None
    tiers: Annotated[list[TierCreate], Field(min_length=1, max_length=20)]

    @model_validator(mode="after")
    def _sales_window_is_ordered(self) -> EventCreate:
        if self.sales_start_at and self.sales_end_at and self.sales_end_at <= self.sales_start_at:
            raise ValueError("sales_end_at must be after sales_start_at")
        return self


class ReserveRequest(BaseModel):
    quantity: Annotated[StrictInt, Field(ge=1, le=100, description="1 to the tier's max_per_order")]
    tier_id: UUID | None = Field(default=None, description="May be left out when the event has one tier")


class ConfirmRequest(BaseModel):
    payment_token: Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=NO_NUL)]


# ----- responses -----

class Tier(BaseModel):
    tier_id: UUID
    name: str
    capacity: int
    price: int
    currency: str
    max_per_order: int
    available_seats: int


class Event(BaseModel):
    event_id: UUID
    name: str
    venue: str | None
    starts_at: UtcDateTime
    currency: str
    hold_seconds: int
    max_per_customer: int | None
    sales_start_at: UtcDateTime | None
    sales_end_at: UtcDateTime | None
    created_at: UtcDateTime
    tiers: list[Tier]


class TierAvailability(BaseModel):
    tier_id: UUID
    name: str
    available_seats: int
    price: int
    currency: str
    max_per_order: int


class Availability(BaseModel):
    event_id: UUID
    available: bool
    available_seats: int
    tiers: list[TierAvailability]


class Ticket(BaseModel):
    ticket_code: str


class Payment(BaseModel):
    transaction_id: str
    status: Literal["captured"]
    amount: int
    currency: str


ReservationStatus = Literal["held", "confirmed", "expired", "cancelled"]


class Reservation(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reservation_id: UUID
    booking_reference: str
    event_id: UUID
    tier_id: UUID
    quantity: int
    status: ReservationStatus
    expires_at: UtcDateTime
    total_amount: int
    currency: str
    payment_status: Literal["pending", "captured", "failed"]
    created_at: UtcDateTime
    confirmed_at: UtcDateTime | None = None
    cancelled_at: UtcDateTime | None = None
    tickets: list[Ticket] = []
    payment: Payment | None = None


class CheckIn(BaseModel):
    ticket_code: str
    checked_in_at: UtcDateTime
    event_id: UUID


class Health(BaseModel):
    status: Literal["ok"]


class ExpiryResult(BaseModel):
    expired: int


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="snake_case error code")
    message: str = Field(description="A sentence a person can act on")


class ErrorResponse(BaseModel):
    error: ErrorDetail
