"""GET /reservations/{reservation_id}."""

from __future__ import annotations

from typing import Any

from tickets.domain import reservations
from tickets.edge.buyers import ReservationSecret, reservation_secret
from tickets.edge.http import Response, create_app, http_handler, json_response, route_responses
from tickets.models.reservations import Reservation

app = create_app()


@app.get("/reservations/<reservation_id>", summary="A reservation", tags=["reservations"],
         responses=route_responses(200, Reservation, "The reservation; a lapsed hold reads expired",
                                   refusals=reservations.READ_REFUSALS))
def get_reservation(reservation_id: str, holder: ReservationSecret = None) -> Response[dict[str, Any]]:
    return json_response(200, reservations.get_reservation(reservation_id, reservation_secret(holder)))


lambda_handler = http_handler(app)
