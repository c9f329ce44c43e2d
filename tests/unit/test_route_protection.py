"""A route's protection is declared once (its security): the template, the function and the OpenAPI file agree."""

from __future__ import annotations

import json
from pathlib import Path

from localstage.lambda_runtime import load_module
from localstage.template import load_template
from tickets.edge.http import ORGANIZER_SCHEME, organizer_routes

ROOT = Path(__file__).resolve().parents[2]


def test_template_code_and_openapi_agree_route_by_route() -> None:
    template = load_template()
    openapi = json.loads((ROOT / "openapi.json").read_text(encoding="utf-8"))
    routes = list(template.routes)
    assert routes
    for route in routes:
        spec = template.functions[route.function]
        in_template = route.authorizer is not None
        in_code = route.route_key in organizer_routes(load_module(spec.code_uri).app)
        operation = openapi["paths"][route.path][route.method.lower()]
        in_openapi = any(ORGANIZER_SCHEME in requirement for requirement in operation.get("security", []))
        assert in_template == in_code == in_openapi, route.route_key
        assert ("401" in operation["responses"]) == in_openapi, route.route_key
    assert {route.route_key for route in routes if route.authorizer} == {
        "POST /events", "POST /events/{event_id}/offers", "POST /tickets/{ticket_code}/check-in",
        "GET /events/{event_id}/queue"}


# The headers of shared/API.md, route by route (name: required). X-Reservation-Secret is optional to
# the resolver: without it the answer is the contract's 404, as for an unknown id, not a 4xx of its own.
CONTRACT_HEADERS = {
    "POST /events/{event_id}/reservations": {"idempotency-key": True, "x-device-id": False,
                                             "x-admission-token": False},
    "POST /reservations/{reservation_id}/confirm": {"idempotency-key": True, "x-reservation-secret": False},
    "DELETE /reservations/{reservation_id}": {"idempotency-key": False, "x-reservation-secret": False},
    "GET /reservations/{reservation_id}": {"x-reservation-secret": False},
    "POST /events/{event_id}/queue": {"x-device-id": False},
}


def test_the_contracts_headers_are_declared_route_by_route() -> None:
    openapi = json.loads((ROOT / "openapi.json").read_text(encoding="utf-8"))
    for route in load_template().routes:
        operation = openapi["paths"][route.path][route.method.lower()]
        headers = {parameter["name"]: parameter["required"] for parameter in operation.get("parameters", [])
                   if parameter["in"] == "header"}
        assert headers == CONTRACT_HEADERS.get(route.route_key, {}), route.route_key
        assert all(parameter.get("description") for parameter in operation.get("parameters", [])
                   if parameter["in"] == "header"), route.route_key
