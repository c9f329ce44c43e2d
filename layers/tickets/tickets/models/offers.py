"""Offer codes."""

from datetime import UTC, datetime
from typing import Annotated, Self
from uuid import UUID

from pydantic import Field, StrictInt, model_validator

from tickets.models.common import Moment, OfferCode, RequestModel, ResponseModel, UtcDateTime


class OfferCreate(RequestModel):
    code: OfferCode
    percent_off: Annotated[StrictInt, Field(ge=1, le=100)] | None = None
    amount_off: Annotated[StrictInt, Field(ge=1, le=10**12, description="Minor units per seat")] | None = None
    max_claims: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    tier_ids: Annotated[list[UUID], Field(min_length=1, max_length=20)] | None = Field(
        None, description="All tiers when absent")
    valid_until: Moment | None = None

    @model_validator(mode="after")
    def _one_discount_kind(self) -> Self:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("give exactly one of percent_off and amount_off")
        return self

    @model_validator(mode="after")
    def _valid_until_ahead(self) -> Self:
        if self.valid_until is not None and self.valid_until <= datetime.now(UTC):
            raise ValueError("valid_until must be in the future")
        return self


class Offer(ResponseModel):
    offer_id: UUID
    code: str
    percent_off: int | None = Field(None, exclude_if=lambda value: value is None)
    amount_off: int | None = Field(None, exclude_if=lambda value: value is None)
    max_claims: int
    claims_left: int
    tier_ids: list[UUID]
    valid_until: UtcDateTime | None
