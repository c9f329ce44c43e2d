"""schemathesis hooks for `make fuzz` (tests/fuzz/run.sh): what the contract says in prose and the
generated openapi.json leaves out, given to the fuzzer so that its requests get past the first refusal.

* X-Reservation-Secret, declared on the reservation's routes (optional: without it, 404), so that the
  stateful phase can pass the secret a reserve returned.
* Links for the stateful phase: an event created -> read it, its availability, reserve in it; a
  reserve -> read, confirm and cancel that reservation with its secret; a confirm -> check its first
  ticket in.
* A fresh Idempotency-Key on every reserve, confirm and cancel (a key of its own per request: the
  key's own rules are the integration tests' business), unless the request carries one.
* The event of a reserve, now and then the seeded demo event rather than a random id, and then its
  tier in place of a random tier id, so that fuzzed bodies reach the inventory (its capacity runs out
  during the run: 409 sold_out is an answer too).

Loaded with SCHEMATHESIS_HOOKS=tests.fuzz.hooks (the repository's root on PYTHONPATH).
"""

from __future__ import annotations

import uuid
from typing import Any

import schemathesis
from hypothesis import strategies as st

from localstage.seed import DEMO_EVENT_ID, DEMO_TIER_ID

SECRET_HEADER = "X-Reservation-Secret"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# (method, path) of the operations that take an Idempotency-Key.
IDEMPOTENT = {("POST", "/events/{event_id}/reservations"), ("POST", "/reservations/{reservation_id}/confirm"),
              ("DELETE", "/reservations/{reservation_id}")}
RESERVATION_PATHS = ("/reservations/{reservation_id}", "/reservations/{reservation_id}/confirm")
# (from method, path, status) -> [(link name, to method, path, parameters)]
LINKS: dict[tuple[str, str, str], list[tuple[str, str, str, dict[str, str]]]] = {
    ("post", "/events", "201"): [
        ("GetEvent", "get", "/events/{event_id}", {"path.event_id": "$response.body#/event_id"}),
        ("GetAvailability", "get", "/events/{event_id}/availability", {"path.event_id": "$response.body#/event_id"}),
        ("Reserve", "post", "/events/{event_id}/reservations", {"path.event_id": "$response.body#/event_id"}),
    ],
    ("post", "/events/{event_id}/reservations", "201"): [
        (name, method, path, {"path.reservation_id": "$response.body#/reservation_id",
                              f"header.{SECRET_HEADER}": "$response.body#/reservation_secret"})
        for name, method, path in (("GetReservation", "get", "/reservations/{reservation_id}"),
                                   ("Confirm", "post", "/reservations/{reservation_id}/confirm"),
                                   ("Cancel", "delete", "/reservations/{reservation_id}"))
    ],
    ("post", "/reservations/{reservation_id}/confirm", "200"): [
        ("CheckIn", "post", "/tickets/{ticket_code}/check-in",
         {"path.ticket_code": "$response.body#/tickets/0/ticket_code"}),
    ],
}


@schemathesis.hook
def before_load_schema(context: Any, raw_schema: dict[str, Any]) -> None:
    paths = raw_schema["paths"]
    for path in RESERVATION_PATHS:
        for operation in paths[path].values():
            operation.setdefault("parameters", []).append({
                "name": SECRET_HEADER, "in": "header", "required": False,
                "description": "The reservation_secret the reserve call returned",
                "schema": {"type": "string", "maxLength": 128, "pattern": "^[!-~]*$"}})
    for (method, path, status), links in LINKS.items():
        response = paths[path][method]["responses"][status]
        response["links"] = {name: {"operationId": paths[to_path][to_method]["operationId"], "parameters": parameters}
                             for name, to_method, to_path, parameters in links}
    # A reserve after an event was created: one seat of its first tier.
    reserve = paths["/events"]["post"]["responses"]["201"]["links"]["Reserve"]
    reserve["requestBody"] = {"quantity": 1, "tier_id": "$response.body#/tiers/0/tier_id"}


@schemathesis.hook
def before_generate_path_parameters(context: Any, strategy: Any) -> Any:
    operation = getattr(context, "operation", None)
    if operation is None or operation.path != "/events/{event_id}/reservations":
        return strategy
    return st.one_of(strategy, strategy.map(_on_demo_event))


def _on_demo_event(generated: Any) -> Any:
    """The path parameters with the demo event's id (schemathesis wraps negative values, which stay)."""
    if hasattr(generated, "map_value"):
        if generated.meta is not None:
            return generated
        return generated.map_value(_on_demo_event)
    return {**(generated or {}), "event_id": DEMO_EVENT_ID}


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if (case.path_parameters or {}).get("event_id") == DEMO_EVENT_ID and isinstance(case.body, dict) and \
            isinstance(case.body.get("tier_id"), str):
        case.body = {**case.body, "tier_id": DEMO_TIER_ID}
    if (case.method.upper(), case.path) in IDEMPOTENT:
        headers = case.headers if case.headers is not None else {}
        if not any(name.lower() == IDEMPOTENCY_HEADER.lower() for name in headers):
            headers[IDEMPOTENCY_HEADER] = f"fuzz-{uuid.uuid4()}"
        case.headers = headers
