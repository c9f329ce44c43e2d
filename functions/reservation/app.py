"""GET /reservations/{reservation_id}."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from tickets.domain import reservations
from tickets.edge.http import create_app, error_responses, http_handler, json_response, success_response
from tickets.models import Reservation

app = create_app()


@app.get("/reservations/<reservation_id>", summary="A reservation", tags=["reservations"],
         responses={**success_response(200, Reservation, "The reservation; a lapsed hold reads expired"),
                    **error_responses({404: "No such reservation (reservation_not_found)"})})
def get_reservation(reservation_id: str) -> Response[dict[str, Any]]:
    return json_response(200, reservations.get_reservation(reservation_id))


lambda_handler = http_handler(app)
