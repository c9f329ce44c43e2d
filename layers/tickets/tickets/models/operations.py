"""The health check and the scheduled expiry."""

from typing import Literal

from tickets.models.common import Model


class Health(Model):
    status: Literal["ok"]


class ExpiryResult(Model):
    expired: int
    # Payment intents settled by reconciliation: sold (tickets issued), refunded, uncharged.
    settled: dict[str, int] = {}
