"""POST /events/{event_id}/reservations: hold seats for hold_seconds."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from tickets.domain import reservations
from tickets.edge.buyers import buyer_fingerprint
from tickets.edge.http import create_app, error_responses, http_handler, success_response
from tickets.edge.idempotency import respond_once
from tickets.models import Reservation, ReserveRequest

app = create_app()


@app.post("/events/<event_id>/reservations", summary="Reserve seats", tags=["reservations"],
          responses={**success_response(201, Reservation, "A hold, status held"),
                     **error_responses({
                         400: "Malformed JSON, or no Idempotency-Key (idempotency_key_required)",
                         403: "Outside the sales window (sales_closed)",
                         404: "No such event or tier (event_not_found, tier_not_found)",
                         409: "sold_out, insufficient_inventory (with available_seats), request_in_progress",
                         422: "validation_error, limit_exceeded, idempotency_key_reused",
                     })})
def reserve(event_id: str, request: ReserveRequest) -> Response[dict[str, Any]]:
    customer = buyer_fingerprint(app.current_event)
    return respond_once(app, status=201, operation=lambda: reservations.reserve(event_id, request, customer))


lambda_handler = http_handler(app)
