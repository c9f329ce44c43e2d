"""Events, their tiers and availability."""

from __future__ import annotations

import uuid
from typing import Any

from tickets.ids import parse_id
from tickets.models import Availability, Event, EventCreate, TierAvailability
from tickets.refusals import NotFound
from tickets.store import db

EVENT_NOT_FOUND = "No event has this id."

# One query for an event and its tiers with the seats a buyer could have right now.
_EVENT_SQL = """
SELECT e.*, coalesce(jsonb_agg(jsonb_build_object(
           'tier_id', t.tier_id, 'name', t.name, 'capacity', t.capacity, 'price', t.price,
           'currency', e.currency, 'max_per_order', t.max_per_order,
           'available_seats', inventory_available(t.tier_id)) ORDER BY t.position), '[]') AS tiers
FROM events e JOIN tiers t ON t.event_id = e.event_id
WHERE e.event_id = %s
GROUP BY e.event_id
"""


def _event_row(event_id: str) -> dict[str, Any]:
    event_uuid = parse_id(event_id, code="event_not_found", message=EVENT_NOT_FOUND)
    with db.database() as conn:
        row = conn.execute(_EVENT_SQL, (event_uuid,)).fetchone()
    if row is None:
        raise NotFound(EVENT_NOT_FOUND, code="event_not_found")
    return row


def create_event(request: EventCreate) -> Event:
    event_id = uuid.uuid4()
    with db.database() as conn, conn.transaction():
        conn.execute(
            "INSERT INTO events (event_id, name, venue, starts_at, currency, hold_seconds, max_per_customer,"
            " sales_start_at, sales_end_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (event_id, request.name, request.venue, request.starts_at, request.currency, request.hold_seconds,
             request.max_per_customer, request.sales_start_at, request.sales_end_at),
        )
        for position, tier in enumerate(request.tiers):
            tier_id = uuid.uuid4()
            conn.execute(
                "INSERT INTO tiers (tier_id, event_id, position, name, capacity, price, max_per_order)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (tier_id, event_id, position, tier.name, tier.capacity, tier.price, tier.max_per_order),
            )
            conn.execute("INSERT INTO tier_inventory (tier_id, capacity) VALUES (%s, %s)", (tier_id, tier.capacity))
    return get_event(str(event_id))


def get_event(event_id: str) -> Event:
    return Event.model_validate(_event_row(event_id))


def availability(event_id: str) -> Availability:
    event = get_event(event_id)
    tiers = [TierAvailability.model_validate(tier.model_dump()) for tier in event.tiers]
    seats = sum(tier.available_seats for tier in tiers)
    return Availability(event_id=event.event_id, available=seats > 0, available_seats=seats, tiers=tiers)
