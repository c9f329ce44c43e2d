"""Reservations: reserve, confirm, and the reservation as every call returns it."""

from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import ConfigDict, Field, StrictInt, StrictStr, model_validator

from tickets.models.common import NO_NUL, OfferCode, RequestModel, ResponseModel, SeatLabel, UtcDateTime


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
    def _quantity_agrees_with_seats(self) -> Self:
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


class ConfirmRequest(RequestModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"payment_token": "tok_visa"}]})

    payment_token: Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=NO_NUL)]


class Ticket(ResponseModel):
    ticket_code: str
    seat: str | None = Field(None, exclude_if=lambda seat: seat is None, description="Assigned seating: its seat")


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
