"""POST /events/{event_id}/reservations: hold seats for hold_seconds."""

from __future__ import annotations

from typing import Any

from tickets.domain import reservations
from tickets.edge.buyers import AdmissionToken, DeviceId, buyer
from tickets.edge.http import Response, create_app, http_handler, route_responses
from tickets.edge.idempotency import IDEMPOTENT_REFUSALS, IdempotencyKey, respond_once
from tickets.models.reservations import Reservation, ReserveRequest

app = create_app()


@app.post("/events/<event_id>/reservations", summary="Reserve seats", tags=["reservations"],
          responses=route_responses(201, Reservation, "A hold, status held",
                                    refusals=[*reservations.RESERVE_REFUSALS, *IDEMPOTENT_REFUSALS]))
def reserve(event_id: str, request: ReserveRequest, idempotency_key: IdempotencyKey, device_id: DeviceId = None,
            admission_token: AdmissionToken = None) -> Response[dict[str, Any]]:
    who = buyer(app.current_event, device_id)
    return respond_once(app, status=201, caller=who.fingerprint, key=idempotency_key,
                        operation=lambda key: reservations.reserve(event_id, request, who, key, admission_token))


lambda_handler = http_handler(app)
