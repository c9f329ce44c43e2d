"""DELETE /reservations/{reservation_id}: release a hold; its seats are free at once."""

from __future__ import annotations

from typing import Any

from tickets.domain import reservations
from tickets.edge.buyers import ReservationSecret, reservation_secret
from tickets.edge.http import Response, create_app, http_handler, route_responses
from tickets.edge.idempotency import IDEMPOTENT_REFUSALS, OptionalIdempotencyKey, respond_once
from tickets.models.reservations import Reservation

app = create_app()


@app.delete("/reservations/<reservation_id>", summary="Cancel a hold", tags=["reservations"],
            responses=route_responses(200, Reservation, "The reservation, status cancelled",
                                      refusals=[*reservations.CANCEL_REFUSALS, *IDEMPOTENT_REFUSALS]))
def cancel_reservation(reservation_id: str, holder: ReservationSecret = None,
                       idempotency_key: OptionalIdempotencyKey = None) -> Response[dict[str, Any]]:
    # Cancel is idempotent by nature: the key is optional and only deduplicates when given.
    secret = reservation_secret(holder)
    return respond_once(app, status=200, caller=secret, key=idempotency_key, key_required=False,
                        operation=lambda _key: reservations.cancel(reservation_id, secret))


lambda_handler = http_handler(app)
