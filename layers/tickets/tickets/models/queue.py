"""The waiting room."""

from typing import Literal

from pydantic import Field

from tickets.models.common import ResponseModel, UtcDateTime

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
