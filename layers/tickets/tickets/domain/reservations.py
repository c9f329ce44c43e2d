"""Reserve, read, cancel and confirm: the reservation lifecycle.

held -> confirmed | expired | cancelled. The capacity rules themselves are in the SQL
functions of migrations/0002_inventory.sql; this module maps their outcomes to the API.
"""

from __future__ import annotations

import uuid
from typing import Any

from tickets.domain.payments import PaymentDeclined, PaymentProvider, PaymentProviderFailure
from tickets.ids import parse_id
from tickets.models import Reservation, ReserveRequest
from tickets.observability import count, logger
from tickets.refusals import ApiError, Conflict, Gone, NotFound, PaymentError, Unprocessable
from tickets.store import db

RESERVATION_NOT_FOUND = "No reservation has this id."
# How long a confirm holds its claim on the hold while charging: the confirm function's timeout.
PAYMENT_CLAIM_SECONDS = 20


def _outcome_error(result: dict[str, Any]) -> ApiError:
    """The API error for a SQL function's refusal."""
    outcome = result["outcome"]
    if outcome == "event_not_found":
        return NotFound("No event has this id.", code="event_not_found")
    if outcome == "tier_not_found":
        return NotFound("This event has no tier with this tier_id.", code="tier_not_found")
    if outcome == "tier_required":
        return Unprocessable("This event has several tiers: give a tier_id.", code="validation_error",
                             details=[{"field": "tier_id", "message": "Field required", "type": "missing"}])
    if outcome == "limit_exceeded":
        if result["limit"] == "max_per_order":
            return Unprocessable(f"At most {result['max_per_order']} seats can be reserved in one order.",
                                 code="limit_exceeded", limit="max_per_order",
                                 max_per_order=result["max_per_order"])
        return Unprocessable(
            f"At most {result['max_per_customer']} seats per customer; {result['remaining']} remain for you.",
            code="limit_exceeded", limit="max_per_customer", max_per_customer=result["max_per_customer"],
            remaining=result["remaining"])
    if outcome == "sales_closed":
        return ApiError("Sales for this event are not open now.", status=403, code="sales_closed",
                        sales_start_at=result.get("sales_start_at"), sales_end_at=result.get("sales_end_at"))
    if outcome == "sold_out":
        return Conflict("This tier is sold out.", code="sold_out", available_seats=0)
    if outcome == "insufficient_inventory":
        seats = result["available_seats"]
        left = "1 seat is" if seats == 1 else f"{seats} seats are"
        return Conflict(f"Only {left} left in this tier.", code="insufficient_inventory", available_seats=seats)
    if outcome == "reservation_not_found":
        return NotFound(RESERVATION_NOT_FOUND, code="reservation_not_found")
    raise ValueError(f"unexpected outcome {outcome!r}")


def _status_error(status: str) -> ApiError:
    """Why a reservation that is no longer a live hold cannot be confirmed or cancelled."""
    if status == "expired":
        return Gone("This hold has expired; reserve again.", code="reservation_expired")
    if status == "confirmed":
        return Conflict("This reservation is already confirmed.", code="reservation_confirmed")
    if status == "cancelled":
        return Conflict("This reservation was cancelled.", code="reservation_cancelled")
    raise ValueError(f"unexpected status {status!r}")


def _reservation_uuid(reservation_id: str) -> uuid.UUID:
    return parse_id(reservation_id, code="reservation_not_found", message=RESERVATION_NOT_FOUND)


def reserve(event_id: str, request: ReserveRequest, customer: str) -> Reservation:
    event_uuid = parse_id(event_id, code="event_not_found", message="No event has this id.")
    result = db.call("reserve_seats(%s, %s, %s, %s, %s)",
                     (event_uuid, request.tier_id, request.quantity, customer, uuid.uuid4()))
    if result["outcome"] != "held":
        if result["outcome"] in ("sold_out", "insufficient_inventory"):
            count("SoldOut")
        raise _outcome_error(result)
    count("ReservationsHeld")
    return Reservation.model_validate(result["reservation"])


def get_reservation(reservation_id: str) -> Reservation:
    with db.database() as conn:
        row = conn.execute("SELECT reservation_json(r) AS reservation FROM reservations r WHERE reservation_id = %s",
                           (_reservation_uuid(reservation_id),)).fetchone()
    if row is None:
        raise NotFound(RESERVATION_NOT_FOUND, code="reservation_not_found")
    return Reservation.model_validate(row["reservation"])


def cancel(reservation_id: str) -> Reservation:
    """Cancelling a cancelled reservation returns it again; confirmed is 409, expired 410."""
    result = db.call("cancel_reservation(%s)", (_reservation_uuid(reservation_id),))
    if result["outcome"] == "reservation_not_found":
        raise _outcome_error(result)
    if result["outcome"] not in ("cancelled",):
        raise _status_error(result["outcome"])
    return Reservation.model_validate(result["reservation"])


def confirm(reservation_id: str, payment_token: str, provider: PaymentProvider) -> Reservation:
    """Charges, then turns the hold into tickets, exactly once.

    The hold is claimed before the charge (a lease of PAYMENT_CLAIM_SECONDS), so nothing is
    charged unless the hold is live, and overlapping confirms under other keys get 409
    request_in_progress instead of a second charge. A payment that succeeds after the hold
    lapsed is recorded as refund_due, refunded, and the seat is never sold twice: the buyer
    gets 410 as if it had lapsed first.
    """
    claim = str(uuid.uuid4())
    claimed = db.call("claim_payment(%s, %s, %s)", (_reservation_uuid(reservation_id), claim, PAYMENT_CLAIM_SECONDS))
    if claimed["outcome"] == "reservation_not_found":
        raise _outcome_error(claimed)
    if claimed["outcome"] == "payment_in_progress":
        raise Conflict("Another confirmation of this reservation is being processed; retry shortly.",
                       code="request_in_progress", headers={"Retry-After": "1"})
    if claimed["outcome"] != "claimed":
        raise _status_error(claimed["outcome"])
    current = Reservation.model_validate(claimed["reservation"])
    try:
        # One provider-side charge per reservation and token, so retries never charge twice.
        charge = provider.charge(amount=current.total_amount, currency=current.currency, token=payment_token,
                                 idempotency_key=f"confirm:{current.reservation_id}:{payment_token}")
    except PaymentDeclined as exc:
        db.call_void("release_payment_claim(%s, %s, %s)", (current.reservation_id, claim, "failed"))
        raise ApiError(f"The payment was declined: {exc}", status=402, code="payment_declined") from exc
    except PaymentProviderFailure as exc:
        db.call_void("release_payment_claim(%s, %s, %s)", (current.reservation_id, claim, None))
        raise PaymentError(f"The payment could not be processed ({exc}); nothing was charged. Retry.") from exc

    result = db.call("confirm_reservation(%s, %s, %s)", (current.reservation_id, charge.transaction_id, charge.amount))
    if result["outcome"] == "sold":
        count("ReservationsConfirmed")
        return Reservation.model_validate(result["reservation"])
    lost_to = Reservation.model_validate(result["reservation"])
    if lost_to.payment is None or lost_to.payment.transaction_id != charge.transaction_id:
        _refund(provider, charge.transaction_id, charge.amount)
    raise _status_error(result["outcome"])


def _refund(provider: PaymentProvider, transaction_id: str, amount: int) -> None:
    try:
        provider.refund(transaction_id=transaction_id, amount=amount)
    except Exception:
        # The row stays refund_due for reconciliation; the buyer's answer does not change.
        logger.exception("refund failed", extra={"transaction_id": transaction_id})
        return
    with db.database() as conn:
        conn.execute("UPDATE payments SET status = 'refunded', refunded_at = now()"
                     " WHERE transaction_id = %s AND status = 'refund_due'", (transaction_id,))
