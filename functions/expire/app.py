"""The scheduled expiry (EventBridge, every minute): returns {"expired": N}."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from tickets.domain import expiry
from tickets.models import ExpiryResult
from tickets.observability import instrumented, logger


def _expire(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    expired = expiry.expire_lapsed_holds(context.get_remaining_time_in_millis)
    logger.info("expired lapsed holds", extra={"expired": expired})
    return ExpiryResult(expired=expired).model_dump()


lambda_handler = instrumented(_expire, http=False)
