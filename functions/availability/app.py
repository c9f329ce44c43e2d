"""GET /events/{event_id}/availability: seats a buyer could have right now."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from tickets.domain import events
from tickets.edge.http import create_app, error_responses, http_handler, json_response, success_response
from tickets.models import Availability

app = create_app()


@app.get("/events/<event_id>/availability", summary="Availability", tags=["events"],
         responses={**success_response(200, Availability, "capacity - confirmed - live holds, per tier"),
                    **error_responses({404: "No such event (event_not_found)"})})
def get_availability(event_id: str) -> Response[dict[str, Any]]:
    return json_response(200, events.availability(event_id))


lambda_handler = http_handler(app)
