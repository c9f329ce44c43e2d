"""GET /events/{event_id}/availability and an assigned-seating tier's seat map: seats a buyer could have right now."""

from __future__ import annotations

from typing import Any

from tickets.domain import events
from tickets.edge.http import Response, create_app, http_handler, json_response, route_responses
from tickets.models.events import Availability, SeatMap

app = create_app()


@app.get("/events/<event_id>/availability", summary="Availability", tags=["events"],
         responses=route_responses(200, Availability, "capacity - confirmed - live holds, per tier",
                                   refusals=events.GET_EVENT_REFUSALS))
def get_availability(event_id: str) -> Response[dict[str, Any]]:
    return json_response(200, events.availability(event_id))


@app.get("/events/<event_id>/tiers/<tier_id>/seats", summary="The seat map of an assigned-seating tier",
         tags=["events"], responses=route_responses(200, SeatMap, "Every seat, in order of preference, with its status",
                                                    refusals=events.SEAT_MAP_REFUSALS))
def get_seat_map(event_id: str, tier_id: str) -> Response[dict[str, Any]]:
    return json_response(200, events.seat_map(event_id, tier_id))


lambda_handler = http_handler(app)
