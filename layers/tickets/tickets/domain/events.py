"""Events, their tiers and availability."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from tickets.ids import parse_id
from tickets.models.events import Availability, Event, EventCreate, SeatMap
from tickets.refusals import Refusal
from tickets.store import db

GET_EVENT_REFUSALS = ("event_not_found",)
SEAT_MAP_REFUSALS = ("event_not_found", "tier_not_found", "not_assigned_seating")


def create_event(request: EventCreate, *, event_id: uuid.UUID | None = None,
                 tier_ids: Sequence[uuid.UUID] | None = None) -> Event:
    """Creates the event with fresh ids (or the given ones); an event id that exists is left as it was."""
    chosen_tier_ids = list(tier_ids) if tier_ids is not None else [uuid.uuid4() for _ in request.tiers]
    if len(chosen_tier_ids) != len(request.tiers):
        raise ValueError("one tier id per tier")
    payload = request.model_dump(mode="json")
    payload["event_id"] = str(event_id or uuid.uuid4())
    for tier, tier_id in zip(payload["tiers"], chosen_tier_ids, strict=True):
        tier["tier_id"] = str(tier_id)
    for quota in payload["quotas"]:
        quota["quota_id"] = str(uuid.uuid4())
    result = db.call("create_event", payload)
    return Event.model_validate(result["event"])


def get_event(event_id: str) -> Event:
    found = db.call("event_json", parse_id(event_id, not_found="event_not_found"))
    if found is None:
        raise Refusal("event_not_found")
    return Event.model_validate(found)


def availability(event_id: str) -> Availability:
    found = db.call("event_availability", parse_id(event_id, not_found="event_not_found"))
    if found is None:
        raise Refusal("event_not_found")
    return Availability.model_validate(found)


def seat_map(event_id: str, tier_id: str) -> SeatMap:
    """Every seat of an assigned-seating tier with its status now (a lapsed hold's seats read available)."""
    event_uuid = parse_id(event_id, not_found="event_not_found")
    result = db.call("tier_seat_map", event_uuid, parse_id(tier_id, not_found="tier_not_found"))
    if result["outcome"] != "map":
        raise Refusal.from_outcome(result)
    return SeatMap.model_validate(result["seat_map"])
