"""Types and base classes of every model, and the error shape every function answers with."""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    StrictStr,
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


OfferCode = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{3,32}$",
                                       description="3 to 32 of A-Z a-z 0-9 _ -; matched case-insensitively")]


class ErrorDetail(Model):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="snake_case error code")
    message: str = Field(description="A sentence a person can act on")


class ErrorResponse(Model):
    error: ErrorDetail
