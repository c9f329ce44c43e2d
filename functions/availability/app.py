"""GET /events/{event_id}/availability: seats a buyer could have right now."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from tickets.domain import events
from tickets.edge.http import create_app, http_handler, json_response, route_responses
from tickets.models import Availability

app = create_app()


@app.get("/events/<event_id>/availability", summary="Availability", tags=["events"],
         responses=route_responses(200, Availability, "capacity - confirmed - live holds, per tier",
                                   refusals=events.GET_EVENT_REFUSALS))
def get_availability(event_id: str) -> Response[dict[str, Any]]:
    return json_response(200, events.availability(event_id))


lambda_handler = http_handler(app)
