"""The waiting room: POST /events/{event_id}/queue (join), GET .../queue/{queue_token} (poll),
GET /events/{event_id}/queue (organizer statistics)."""

from __future__ import annotations

from typing import Any

from tickets.domain import queue
from tickets.edge.buyers import DeviceId, buyer
from tickets.edge.http import Response, create_app, http_handler, json_response, organizer_only, route_responses
from tickets.models.queue import QueueEntry, QueueStatistics

app = create_app()

_JOINED = route_responses(201, QueueEntry, "The buyer's new entry, in its current state", refusals=queue.JOIN_REFUSALS)
_JOINED[200] = {"description": "The entry this buyer (by fingerprint) already has, in its current state",
                "content": {"application/json": {"model": QueueEntry}}}


@app.post("/events/<event_id>/queue", summary="Join the event's waiting room", tags=["waiting room"],
          responses=dict(sorted(_JOINED.items())))
def join(event_id: str, device_id: DeviceId = None) -> Response[dict[str, Any]]:
    entry, created = queue.join(event_id, buyer(app.current_event, device_id).fingerprint)
    return json_response(201 if created else 200, entry)


@app.get("/events/<event_id>/queue/<queue_token>", summary="Poll a queue entry", tags=["waiting room"],
         responses=route_responses(200, QueueEntry, "The entry: waiting, admitted (with its admission token), "
                                   "expired or sold_out", refusals=queue.POLL_REFUSALS))
def poll(event_id: str, queue_token: str) -> Response[dict[str, Any]]:
    return json_response(200, queue.poll(event_id, queue_token))


@app.get("/events/<event_id>/queue", summary="The queue's entries per state", tags=["waiting room"],
         **organizer_only(route_responses(200, QueueStatistics, "Counts of the entries now in each state",
                                          refusals=queue.STATISTICS_REFUSALS)))
def statistics(event_id: str) -> Response[dict[str, Any]]:
    return json_response(200, queue.statistics(event_id))


lambda_handler = http_handler(app)
