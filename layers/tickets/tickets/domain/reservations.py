"""Reserve, read, cancel and confirm: the reservation lifecycle, and settling interrupted payments.

held -> confirmed | expired | cancelled. The rules themselves are in the SQL functions
(store/functions/30_reservations.sql, capacity in 10_inventory.sql); this module orders the
steps that cannot be one transaction (charging a card) and speaks in refusals.

Every write is idempotent in the database, keyed by the request that made it: a reserve retried
after a fault finds its own hold, a confirm retried resumes its own claim and payment intent.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from tickets.ids import parse_id
from tickets.models.reservations import Reservation, ReserveRequest
from tickets.observability import count, logger
from tickets.payments import PaymentDeclined, PaymentProvider, PaymentProviderFailure, intent_key
from tickets.refusals import Refusal
from tickets.store import db

RESERVE_REFUSALS = ("event_not_found", "tier_not_found", "offer_not_found", "validation_error", "offer_not_applicable",
                    "limit_exceeded", "sales_closed", "sold_out", "insufficient_inventory", "seats_unavailable",
                    "offer_exhausted", "idempotency_key_reused", "admission_required", "admission_invalid",
                    "admission_expired")
READ_REFUSALS = ("reservation_not_found",)
CANCEL_REFUSALS = ("reservation_not_found", "reservation_confirmed", "reservation_expired")
CONFIRM_REFUSALS = ("reservation_not_found", "reservation_expired", "reservation_cancelled",
                    "reservation_confirmed", "request_in_progress", "payment_declined", "payment_error")
# Reconciliation: how many intents and refunds one pass settles at most.
SETTLE_BATCH = 100


@dataclass(frozen=True)
class Buyer:
    fingerprint: str  # the device, or the client's address, agent and language: per-customer limits
    address: str  # the source address alone: max_holds_per_ip


class ReserveAnswer(NamedTuple):
    """reserve_hold's OUT parameters, in order (store/functions/30_reservations.sql): answer, or with
    answer None, what the database chose or worked out for a new hold (hold_ and the field's name)."""

    answer: dict[str, Any] | None
    booking_reference: str | None
    tier_id: uuid.UUID | None
    seats: list[str] | None
    total_amount: int | None
    discount_amount: int | None
    currency: str | None
    offer_code: str | None
    created_at: datetime | None
    expires_at: datetime | None

    def new_hold(self) -> dict[str, Any]:
        """The new hold's fields that the database gave."""
        fields = self._asdict()
        del fields["answer"]
        return fields


def _request_key(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def _reservation_uuid(reservation_id: str) -> uuid.UUID:
    return parse_id(reservation_id, not_found="reservation_not_found")


def reserve(event_id: str, request: ReserveRequest, buyer: Buyer, idempotency_key: str | None = None,
            admission_token: str | None = None) -> Reservation:
    """Holds seats; the answer carries the reservation_secret its holder acts with. On an event with
    a waiting room, the admission is checked first (a signature: no store call), before inventory."""
    # The waiting room's module brings boto3 and the secrets client: loaded by the first reserve, not at a cold start.
    from tickets.domain import queue  # noqa: PLC0415

    event_uuid = parse_id(event_id, not_found="event_not_found")
    queue.check_admission(event_uuid, admission_token)
    # Scoped to the buyer: another buyer's same key never finds this hold.
    request_key = None if idempotency_key is None else _request_key(event_uuid, buyer.fingerprint, idempotency_key)
    quantity = request.seat_count
    reservation_id, secret = uuid.uuid4(), secrets.token_urlsafe(24)
    attempt = (event_uuid, request.tier_id, quantity, buyer.fingerprint, buyer.address, reservation_id,
               secret, request_key, request.offer_code, request.seats)
    answer = ReserveAnswer(*db.call("reserve_hold", *attempt, True))
    result = answer.answer
    if result is not None and (result["outcome"] == "reclaim"
                               or (result.get("reclaim") and result["available_seats"] >= quantity)):
        # Lapsed holds stood in the way (a lapsed hold never blocks a sale), or would have slowed a
        # best-available choice of seats: reclaim them, ask again (choosing around any left).
        db.call("reclaim_lapsed_for_tier", uuid.UUID(result["tier_id"]),
                uuid.UUID(result["offer_id"]) if result.get("offer_id") else None)
        answer = ReserveAnswer(*db.call("reserve_hold", *attempt, False))
        result = answer.answer
    if result is None:
        count("ReservationsHeld")
        return Reservation.model_validate({
            "reservation_id": reservation_id, "event_id": event_uuid, "quantity": quantity, "status": "held",
            "payment_status": "pending", "reservation_secret": secret, **answer.new_hold()})
    if result["outcome"] != "held":
        if result["outcome"] in ("sold_out", "insufficient_inventory"):
            count("SoldOut")
        elif result["outcome"] == "seats_unavailable":
            count("SeatsUnavailable")
        raise Refusal.from_outcome(result)
    count("ReservationsHeld")
    return Reservation.model_validate(result["reservation"])


def get_reservation(reservation_id: str, secret: str) -> Reservation:
    found = db.call("reservation_read", _reservation_uuid(reservation_id), secret)
    if found is None:
        raise Refusal("reservation_not_found")
    return Reservation.model_validate(found)


def cancel(reservation_id: str, secret: str) -> Reservation:
    """Cancelling a cancelled reservation returns it again; confirmed is 409, expired 410."""
    result = db.call("cancel_reservation", _reservation_uuid(reservation_id), secret)
    if result["outcome"] != "cancelled":
        raise Refusal.from_outcome(result)
    return Reservation.model_validate(result["reservation"])


def confirm(reservation_id: str, secret: str, payment_token: str, provider: PaymentProvider, *,
            lease_seconds: int, idempotency_key: str | None = None) -> Reservation:
    """Charges, then turns the hold into tickets, exactly once.

    The hold is claimed before the charge for `lease_seconds` (what is left of the function's
    time) and the payment intent recorded, so nothing is charged unless the hold is live, and
    overlapping confirms under other keys get 409 request_in_progress instead of a second charge.
    A retry under the same key resumes the claim: the provider's idempotency key makes its charge
    the same one. A payment captured after the hold lapsed is refunded, and the buyer gets 410.
    """
    rid = _reservation_uuid(reservation_id)
    claim = _request_key(rid, idempotency_key) if idempotency_key is not None else str(uuid.uuid4())
    key = intent_key(rid, payment_token)
    claimed = db.call("claim_payment", rid, secret, claim, lease_seconds, key)
    if claimed["outcome"] == "sold":  # this very request went through before a fault hid the answer
        return Reservation.model_validate(claimed["reservation"])
    if claimed["outcome"] != "claimed":
        raise Refusal.from_outcome(claimed)
    current = Reservation.model_validate(claimed["reservation"])
    transaction_id: str | None
    try:
        transaction_id = provider.charge(amount=current.total_amount, currency=current.currency,
                                         token=payment_token, idempotency_key=key).transaction_id
    except PaymentDeclined as exc:
        db.call("release_payment_claim", rid, claim, key, "declined", False)
        raise Refusal("payment_declined") from exc
    except PaymentProviderFailure as exc:
        # The charge may have gone through before the answer was lost: ask before saying no.
        transaction_id = _charged_under(provider, key)
        if transaction_id is None:
            db.call("release_payment_claim", rid, claim, key, "failed", False)
            raise Refusal("payment_error") from exc
    return _settle(rid, claim, key, transaction_id, current.total_amount, provider)


def _charged_under(provider: PaymentProvider, key: str) -> str | None:
    try:
        return provider.find_charge(idempotency_key=key)
    except PaymentProviderFailure as exc:
        # Unknown: the intent stays pending, and reconciliation settles it after the lease.
        raise Refusal("payment_error") from exc


def _settle(rid: uuid.UUID, claim: str, key: str, transaction_id: str, amount: int,
            provider: PaymentProvider) -> Reservation:
    """Records a captured payment: tickets for a live hold, else a refund and the hold's refusal."""
    result = db.call("confirm_reservation", rid, claim, key, transaction_id, amount)
    if result["outcome"] == "sold":
        count("ReservationsConfirmed")
        return Reservation.model_validate(result["reservation"])
    if "refund" in result:
        _refund(provider, result["refund"])
    raise Refusal.from_outcome(result)


def _refund(provider: PaymentProvider, payment: dict[str, Any]) -> None:
    try:
        provider.refund(transaction_id=payment["transaction_id"], amount=payment["amount"])
    except Exception:
        # The payment stays refund_due, and reconciliation sends the refund again.
        logger.exception("refund failed", extra={"transaction_id": payment["transaction_id"]})
        return
    db.call("record_refund", payment["transaction_id"])


def settle_payments(provider: PaymentProvider) -> dict[str, int]:
    """Reconciliation (scheduled): settles the payment intents whose confirm ended without an
    outcome (a fault after the claim), asking the provider what became of each, and sends the
    refunds still due. Returns how many intents ended sold, refunded or uncharged."""
    work = db.call("payments_to_settle", SETTLE_BATCH)
    settled = {"sold": 0, "refunded": 0, "uncharged": 0}
    for intent in work["intents"]:
        rid, claim, key = uuid.UUID(intent["reservation_id"]), intent["claim"], intent["intent_key"]
        try:
            transaction_id = provider.find_charge(idempotency_key=key)
        except PaymentProviderFailure:
            logger.warning("provider unreachable; intent left for the next pass", extra={"intent": key})
            continue
        if transaction_id is None:
            if db.call("release_payment_claim", rid, claim, key, "failed", True):
                settled["uncharged"] += 1
            continue
        try:
            _settle(rid, claim, key, transaction_id, intent["amount"], provider)
            settled["sold"] += 1
        except Refusal:
            settled["refunded"] += 1
    for payment in work["refunds"]:
        _refund(provider, payment)
    if any(settled.values()):
        logger.info("payments settled", extra=settled)
    return settled
