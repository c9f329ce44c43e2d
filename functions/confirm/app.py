"""POST /reservations/{reservation_id}/confirm: pay, and turn the hold into tickets."""

from __future__ import annotations

import math
from typing import Any

from tickets.domain import reservations
from tickets.edge.buyers import ReservationSecret, reservation_secret
from tickets.edge.http import Response, create_app, http_handler, route_responses
from tickets.edge.idempotency import IDEMPOTENT_REFUSALS, IdempotencyKey, respond_once
from tickets.models.reservations import ConfirmRequest, Reservation
from tickets.payments import payment_provider

app = create_app()
provider = payment_provider()


@app.post("/reservations/<reservation_id>/confirm", summary="Confirm and pay", tags=["reservations"],
          responses=route_responses(200, Reservation, "Confirmed, with tickets and payment",
                                    refusals=[*reservations.CONFIRM_REFUSALS, *IDEMPOTENT_REFUSALS]))
def confirm_reservation(reservation_id: str, request: ConfirmRequest, idempotency_key: IdempotencyKey,
                        holder: ReservationSecret = None) -> Response[dict[str, Any]]:
    # The claim on the hold lasts as long as this invocation may: the function's timeout, less what has run.
    lease_seconds = math.ceil(app.lambda_context.get_remaining_time_in_millis() / 1000)
    secret = reservation_secret(holder)
    return respond_once(app, status=200, caller=secret, key=idempotency_key, operation=lambda key: reservations.confirm(
        reservation_id, secret, request.payment_token, provider, lease_seconds=lease_seconds, idempotency_key=key))


lambda_handler = http_handler(app)
