"""The scheduled expiry (EventBridge, every minute): expires lapsed holds, then settles the
payments that faults left unsettled. Returns {"expired": N, "settled": {...}}."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from tickets.domain import expiry, reservations
from tickets.models.operations import ExpiryResult
from tickets.observability import instrumented, logger
from tickets.payments import payment_provider

provider = payment_provider()


def _expire(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    expired = expiry.expire_lapsed_holds(context.get_remaining_time_in_millis)
    settled = reservations.settle_payments(provider)
    logger.info("expired lapsed holds", extra={"expired": expired})
    return ExpiryResult(expired=expired, settled=settled).model_dump()


lambda_handler = instrumented(_expire, http=False)
