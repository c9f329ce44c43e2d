"""POST /reservations/{reservation_id}/confirm: pay, and turn the hold into tickets."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from tickets.domain import reservations
from tickets.domain.payments import payment_provider
from tickets.edge.http import create_app, error_responses, http_handler, success_response
from tickets.edge.idempotency import respond_once
from tickets.models import ConfirmRequest, Reservation

app = create_app()
provider = payment_provider()


@app.post("/reservations/<reservation_id>/confirm", summary="Confirm and pay", tags=["reservations"],
          responses={**success_response(200, Reservation, "Confirmed, with tickets and payment"),
                     **error_responses({
                         400: "Malformed JSON, or no Idempotency-Key (idempotency_key_required)",
                         402: "The payment was declined (payment_declined); the hold stays",
                         404: "No such reservation (reservation_not_found)",
                         409: "reservation_confirmed, reservation_cancelled, request_in_progress",
                         410: "The hold expired (reservation_expired); nothing is charged",
                         502: "The payment provider failed (payment_error); the hold stays",
                     })})
def confirm_reservation(reservation_id: str, request: ConfirmRequest) -> Response[dict[str, Any]]:
    return respond_once(app, status=200,
                        operation=lambda: reservations.confirm(reservation_id, request.payment_token, provider))


lambda_handler = http_handler(app)
