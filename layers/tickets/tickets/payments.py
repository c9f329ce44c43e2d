"""The payment-provider interface and the built-in test provider.

A provider charges with an idempotency key: the same key charges once and returns the same
transaction, as real providers do, so a retried confirm never charges twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from tickets.settings import settings


@dataclass(frozen=True)
class Charge:
    transaction_id: str
    amount: int
    currency: str


class PaymentDeclined(Exception):
    """The buyer's payment method was refused (HTTP 402)."""


class PaymentProviderFailure(Exception):
    """The provider failed or could not be reached (HTTP 502)."""


class PaymentProvider(Protocol):
    def charge(self, *, amount: int, currency: str, token: str, idempotency_key: str) -> Charge: ...

    def refund(self, *, transaction_id: str, amount: int) -> None: ...


class TestPaymentProvider:
    """Approves every token but `tok_decline` (declined) and `tok_error` (provider failure)."""

    __test__ = False  # not a pytest test class
    _NAMESPACE = uuid.UUID("5f0c7d0e-7d6b-4a1e-9a55-6b0f3c1d2e7a")

    def charge(self, *, amount: int, currency: str, token: str, idempotency_key: str) -> Charge:
        if token == "tok_decline":  # noqa: S105 - a test token, not a secret
            raise PaymentDeclined("The card was declined.")
        if token == "tok_error":  # noqa: S105 - a test token, not a secret
            raise PaymentProviderFailure("The payment provider did not answer.")
        transaction = uuid.uuid5(self._NAMESPACE, idempotency_key).hex[:24]
        return Charge(transaction_id=f"txn_{transaction}", amount=amount, currency=currency)

    def refund(self, *, transaction_id: str, amount: int) -> None:
        return None


def payment_provider() -> PaymentProvider:
    name = settings().payment_provider
    if name == "test":
        return TestPaymentProvider()
    raise RuntimeError(f"unknown PAYMENT_PROVIDER {name!r}")
