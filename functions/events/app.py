"""POST /events (organizer) and GET /events/{event_id}."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from tickets.domain import events
from tickets.edge.http import (
    ORGANIZER_SECURITY,
    create_app,
    error_responses,
    http_handler,
    json_response,
    success_response,
)
from tickets.models import Event, EventCreate

app = create_app()


@app.post("/events", summary="Create an event", tags=["events"],
          security=ORGANIZER_SECURITY,
          responses={**success_response(201, Event, "The event, as GET returns it"),
                     **error_responses({401: "Missing or wrong organizer token (unauthorized)"})})
def create_event(event: EventCreate) -> Response[dict[str, Any]]:
    return json_response(201, events.create_event(event))


@app.get("/events/<event_id>", summary="An event with its tiers", tags=["events"],
         responses={**success_response(200, Event, "The event"),
                    **error_responses({404: "No such event (event_not_found)"})})
def get_event(event_id: str) -> Response[dict[str, Any]]:
    return json_response(200, events.get_event(event_id))


lambda_handler = http_handler(app, organizer_routes=frozenset({"POST /events"}))
