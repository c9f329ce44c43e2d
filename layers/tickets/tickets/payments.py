"""The payment-provider interface and the built-in test provider.

A provider charges with an idempotency key: the same key charges once and returns the same
transaction, as real providers do, so a retried confirm never charges twice; and it can say
what became of a key (`find_charge`), which is how a payment interrupted by a fault is settled.
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

    def find_charge(self, *, idempotency_key: str) -> str | None:
        """The transaction captured under this key, or None when nothing was charged under it."""
        ...


def intent_key(reservation_id: uuid.UUID, token: str) -> str:
    """The provider idempotency key of paying for a reservation with a token: one charge per pair."""
    return f"confirm:{reservation_id}:{token}"


class TestPaymentProvider:
    """Approves every token but `tok_decline` (declined), `tok_error` (the provider fails,
    nothing is charged) and `tok_timeout` (the provider charges, then its answer is lost).

    Stateless, so that every process of the local stage agrees: what a key charged follows
    from the token inside it (see `intent_key`).
    """

    __test__ = False  # not a pytest test class
    _NAMESPACE = uuid.UUID("5f0c7d0e-7d6b-4a1e-9a55-6b0f3c1d2e7a")

    def _transaction(self, idempotency_key: str) -> str:
        return "txn_" + uuid.uuid5(self._NAMESPACE, idempotency_key).hex[:24]

    def charge(self, *, amount: int, currency: str, token: str, idempotency_key: str) -> Charge:
        if token == "tok_decline":  # noqa: S105 - a test token, not a secret
            raise PaymentDeclined("The card was declined.")
        if token in ("tok_error", "tok_timeout"):
            raise PaymentProviderFailure("The payment provider did not answer.")
        return Charge(transaction_id=self._transaction(idempotency_key), amount=amount, currency=currency)

    def refund(self, *, transaction_id: str, amount: int) -> None:
        return None

    def find_charge(self, *, idempotency_key: str) -> str | None:
        token = idempotency_key.split(":", 2)[-1]
        if token in ("tok_decline", "tok_error"):
            return None
        return self._transaction(idempotency_key)


def payment_provider() -> PaymentProvider:
    name = settings().payment_provider
    if name == "test":
        return TestPaymentProvider()
    raise RuntimeError(f"unknown PAYMENT_PROVIDER {name!r}")
