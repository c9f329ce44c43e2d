"""POST /events (organizer) and GET /events/{event_id}."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from tickets.domain import events
from tickets.edge.http import create_app, http_handler, json_response, organizer_only, route_responses
from tickets.models import Event, EventCreate

app = create_app()


@app.post("/events", summary="Create an event", tags=["events"],
          **organizer_only(route_responses(201, Event, "The event, as GET returns it")))
def create_event(event: EventCreate) -> Response[dict[str, Any]]:
    return json_response(201, events.create_event(event))


@app.get("/events/<event_id>", summary="An event with its tiers", tags=["events"],
         responses=route_responses(200, Event, "The event", refusals=events.GET_EVENT_REFUSALS))
def get_event(event_id: str) -> Response[dict[str, Any]]:
    return json_response(200, events.get_event(event_id))


lambda_handler = http_handler(app)
