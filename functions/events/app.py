"""POST /events (organizer), GET /events/{event_id}, and the event's offers."""

from __future__ import annotations

from typing import Any

from tickets.domain import events, offers
from tickets.edge.http import Response, create_app, http_handler, json_response, organizer_only, route_responses
from tickets.models.events import Event, EventCreate
from tickets.models.offers import Offer, OfferCreate

app = create_app()


@app.post("/events", summary="Create an event", tags=["events"],
          **organizer_only(route_responses(201, Event, "The event, as GET returns it")))
def create_event(event: EventCreate) -> Response[dict[str, Any]]:
    return json_response(201, events.create_event(event))


@app.get("/events/<event_id>", summary="An event with its tiers", tags=["events"],
         responses=route_responses(200, Event, "The event", refusals=events.GET_EVENT_REFUSALS))
def get_event(event_id: str) -> Response[dict[str, Any]]:
    return json_response(200, events.get_event(event_id))


@app.post("/events/<event_id>/offers", summary="Create an offer (a limited discount code)", tags=["offers"],
          **organizer_only(route_responses(201, Offer, "The offer", refusals=offers.CREATE_OFFER_REFUSALS)))
def create_offer(event_id: str, offer: OfferCreate) -> Response[dict[str, Any]]:
    return json_response(201, offers.create_offer(event_id, offer))


@app.get("/events/<event_id>/offers/<code>", summary="An offer, with the claims left", tags=["offers"],
         responses=route_responses(200, Offer, "The offer", refusals=offers.GET_OFFER_REFUSALS))
def get_offer(event_id: str, code: str) -> Response[dict[str, Any]]:
    return json_response(200, offers.get_offer(event_id, code))


lambda_handler = http_handler(app)
