"""Writes events/: one sample event per route of template.yaml, plus the scheduled expiry.

    python -m localstage.sample_events        # rewrites events/*.json

The events are API Gateway HTTP API payload 2.0 events built by the same code the local stage
uses, so `python -m localstage invoke reserve events/reserve.json` (make invoke) and
`sam local invoke ReserveFunction -e events/reserve.json` see what the deployed API sends.
They refer to the demo event that the local stage seeds (Demo Night, one tier of 100 seats).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from localstage.lambda_runtime import ROOT, apply_authorizer_result, authorizer_event, http_event, scheduled_event
from localstage.seed import (
    DEMO_ADMIN_TOKEN,
    DEMO_EVENT_ID,
    DEMO_RESERVATION_ID,
    DEMO_SEATED_EVENT_ID,
    DEMO_SEATED_TIER_ID,
    DEMO_TICKET_CODE,
)
from localstage.template import load_template

EVENTS_DIR = ROOT / "events"

# Fixed values where API Gateway puts fresh ones, so that rewriting the files changes nothing.
REQUEST_ID = "c0ffee00-0000-4000-8000-000000000001"
TIME = "01/Jan/2030:12:00:00 +0000"
TIME_EPOCH = 1893499200000
COMMON_HEADERS = {
    "accept": "application/json",
    "host": "localhost:3000",
    "user-agent": "curl/8.5.0",
    "x-forwarded-for": "127.0.0.1",
    "x-forwarded-port": "3000",
    "x-forwarded-proto": "http",
}
ORGANIZER = {"authorization": f"Bearer {DEMO_ADMIN_TOKEN}"}
JSON = {"content-type": "application/json"}
# The reserve call answers the secret; a sample cannot know it, so it shows where it goes.
HOLDER = {"x-reservation-secret": "the-reservation_secret-of-the-reserve-answer"}

SAMPLES: list[tuple[str, str, str, dict[str, str], dict[str, str], dict[str, Any] | None]] = [
    # file, method, route path, path parameters, extra headers, body
    ("health", "GET", "/health", {}, {}, None),
    ("create_event", "POST", "/events", {}, {**ORGANIZER, **JSON}, {
        "name": "Spring Gala", "venue": "Hall A", "starts_at": "2030-04-01T19:00:00Z", "currency": "EUR",
        "hold_seconds": 600, "max_per_customer": 8,
        "tiers": [{"name": "General", "capacity": 500, "price": 2500, "max_per_order": 6}],
    }),
    ("get_event", "GET", "/events/{event_id}", {"event_id": DEMO_EVENT_ID}, {}, None),
    ("availability", "GET", "/events/{event_id}/availability", {"event_id": DEMO_EVENT_ID}, {}, None),
    ("reserve", "POST", "/events/{event_id}/reservations", {"event_id": DEMO_EVENT_ID},
     {**JSON, "idempotency-key": "sample-reserve-0001", "x-device-id": "sample-device-0001"}, {"quantity": 2}),
    ("get_reservation", "GET", "/reservations/{reservation_id}", {"reservation_id": DEMO_RESERVATION_ID}, HOLDER,
     None),
    ("cancel", "DELETE", "/reservations/{reservation_id}", {"reservation_id": DEMO_RESERVATION_ID}, HOLDER, None),
    ("confirm", "POST", "/reservations/{reservation_id}/confirm", {"reservation_id": DEMO_RESERVATION_ID},
     {**JSON, **HOLDER, "idempotency-key": "sample-confirm-0001"}, {"payment_token": "tok_visa"}),
    ("create_offer", "POST", "/events/{event_id}/offers", {"event_id": DEMO_EVENT_ID}, {**ORGANIZER, **JSON},
     {"code": "EARLY20", "percent_off": 20, "max_claims": 100}),
    ("get_offer", "GET", "/events/{event_id}/offers/{code}", {"event_id": DEMO_EVENT_ID, "code": "EARLY20"}, {},
     None),
    ("seat_map", "GET", "/events/{event_id}/tiers/{tier_id}/seats",
     {"event_id": DEMO_SEATED_EVENT_ID, "tier_id": DEMO_SEATED_TIER_ID}, {}, None),
    ("reserve_seats", "POST", "/events/{event_id}/reservations", {"event_id": DEMO_SEATED_EVENT_ID},
     {**JSON, "idempotency-key": "sample-reserve-0002", "x-device-id": "sample-device-0002"},
     {"seats": ["C-5", "C-6"]}),
    ("check_in", "POST", "/tickets/{ticket_code}/check-in", {"ticket_code": DEMO_TICKET_CODE}, ORGANIZER, None),
    # The demo event has no waiting room: these answer 422 no_waiting_room / 404 until an event has one.
    ("join_queue", "POST", "/events/{event_id}/queue", {"event_id": DEMO_EVENT_ID},
     {"x-device-id": "sample-device-0001"}, None),
    ("poll_queue", "GET", "/events/{event_id}/queue/{queue_token}",
     {"event_id": DEMO_EVENT_ID, "queue_token": "the-queue_token-of-join"}, {}, None),
    ("queue_statistics", "GET", "/events/{event_id}/queue", {"event_id": DEMO_EVENT_ID}, ORGANIZER, None),
]


def sample_events() -> dict[str, dict[str, Any]]:
    routes = {route.route_key: route for route in load_template().routes}
    declared = set(routes)
    events: dict[str, dict[str, Any]] = {}
    for name, method, route_path, params, headers, body in SAMPLES:
        route_key = f"{method} {route_path}"
        if route_key not in declared:
            raise SystemExit(f"{name}: template.yaml declares no route {route_key}")
        path = route_path.format(**params)
        event = http_event(method, path, route_key=route_key, path_parameters=params or None,
                           headers={**COMMON_HEADERS, **headers},
                           body=json.dumps(body, separators=(",", ":")) if body is not None else None)
        if body is not None:
            event["headers"]["content-length"] = str(len(event["body"].encode()))
        context = event["requestContext"]
        context.update(requestId=REQUEST_ID, time=TIME, timeEpoch=TIME_EPOCH)
        if routes[route_key].authorizer is not None:
            # What the function sees once the route's authorizer accepted the sample token; the
            # authorizer's own sample is the request before that.
            events.setdefault("authorizer", authorizer_event(json.loads(json.dumps(event))))
            apply_authorizer_result(event, {"isAuthorized": True, "context": {"role": "organizer"}})
        events[name] = event
    missing = declared - {f"{method} {path}" for _, method, path, *_ in SAMPLES}
    if missing:
        raise SystemExit(f"no sample event for {', '.join(sorted(missing))}: add one to localstage/sample_events.py")
    expire = scheduled_event()
    expire.update(id="c0ffee00-0000-4000-8000-000000000002", time="2030-01-01T12:00:00Z")
    events["expire"] = expire
    return events


def write(directory: Path = EVENTS_DIR) -> list[Path]:
    directory.mkdir(exist_ok=True)
    written = []
    for name, event in sample_events().items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(event, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main() -> int:
    for path in write():
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
