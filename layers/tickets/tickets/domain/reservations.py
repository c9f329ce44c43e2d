"""Reserve, read, cancel and confirm: the reservation lifecycle.

held -> confirmed | expired | cancelled. The rules themselves are in the SQL functions
(store/functions/30_reservations.sql, capacity in 10_inventory.sql); this module orders the
steps that cannot be one transaction (charging a card) and speaks in refusals.
"""

from __future__ import annotations

import uuid

from tickets.ids import parse_id
from tickets.models import Reservation, ReserveRequest
from tickets.observability import count, logger
from tickets.payments import PaymentDeclined, PaymentProvider, PaymentProviderFailure
from tickets.refusals import Refusal
from tickets.store import db

RESERVE_REFUSALS = ("event_not_found", "tier_not_found", "validation_error", "limit_exceeded", "sales_closed",
                    "sold_out", "insufficient_inventory")
READ_REFUSALS = ("reservation_not_found",)
CANCEL_REFUSALS = ("reservation_not_found", "reservation_confirmed", "reservation_expired")
CONFIRM_REFUSALS = ("reservation_not_found", "reservation_expired", "reservation_cancelled",
                    "reservation_confirmed", "request_in_progress", "payment_declined", "payment_error")


def _reservation_uuid(reservation_id: str) -> uuid.UUID:
    return parse_id(reservation_id, not_found="reservation_not_found")


def reserve(event_id: str, request: ReserveRequest, customer: str) -> Reservation:
    result = db.call("reserve_seats", parse_id(event_id, not_found="event_not_found"), request.tier_id,
                     request.quantity, customer, uuid.uuid4())
    if result["outcome"] != "held":
        if result["outcome"] in ("sold_out", "insufficient_inventory"):
            count("SoldOut")
        raise Refusal.from_outcome(result)
    count("ReservationsHeld")
    return Reservation.model_validate(result["reservation"])


def get_reservation(reservation_id: str) -> Reservation:
    found = db.call("reservation_read", _reservation_uuid(reservation_id))
    if found is None:
        raise Refusal("reservation_not_found")
    return Reservation.model_validate(found)


def cancel(reservation_id: str) -> Reservation:
    """Cancelling a cancelled reservation returns it again; confirmed is 409, expired 410."""
    result = db.call("cancel_reservation", _reservation_uuid(reservation_id))
    if result["outcome"] != "cancelled":
        raise Refusal.from_outcome(result)
    return Reservation.model_validate(result["reservation"])


def confirm(reservation_id: str, payment_token: str, provider: PaymentProvider, *, lease_seconds: int) -> Reservation:
    """Charges, then turns the hold into tickets, exactly once.

    The hold is claimed before the charge for `lease_seconds` (what is left of the function's
    time), so nothing is charged unless the hold is live, and overlapping confirms under other
    keys get 409 request_in_progress instead of a second charge. A payment that succeeds after
    the hold lapsed is recorded as refund_due, refunded, and the seat is never sold twice: the
    buyer gets 410 as if it had lapsed first.
    """
    claim = str(uuid.uuid4())
    claimed = db.call("claim_payment", _reservation_uuid(reservation_id), claim, lease_seconds)
    if claimed["outcome"] != "claimed":
        raise Refusal.from_outcome(claimed)
    current = Reservation.model_validate(claimed["reservation"])
    try:
        # One provider-side charge per reservation and token, so retries never charge twice.
        charge = provider.charge(amount=current.total_amount, currency=current.currency, token=payment_token,
                                 idempotency_key=f"confirm:{current.reservation_id}:{payment_token}")
    except PaymentDeclined as exc:
        db.call("release_payment_claim", current.reservation_id, claim, "failed")
        raise Refusal("payment_declined") from exc
    except PaymentProviderFailure as exc:
        db.call("release_payment_claim", current.reservation_id, claim, None)
        raise Refusal("payment_error") from exc

    result = db.call("confirm_reservation", current.reservation_id, charge.transaction_id, charge.amount)
    if result["outcome"] == "sold":
        count("ReservationsConfirmed")
        return Reservation.model_validate(result["reservation"])
    lost_to = Reservation.model_validate(result["reservation"])
    if lost_to.payment is None or lost_to.payment.transaction_id != charge.transaction_id:
        _refund(provider, charge.transaction_id, charge.amount)
    raise Refusal.from_outcome(result)


def _refund(provider: PaymentProvider, transaction_id: str, amount: int) -> None:
    try:
        provider.refund(transaction_id=transaction_id, amount=amount)
    except Exception:
        # The row stays refund_due for reconciliation; the buyer's answer does not change.
        logger.exception("refund failed", extra={"transaction_id": transaction_id})
        return
    db.call("record_refund", transaction_id)
