"""Calls the Lambda handlers with real API Gateway HTTP API events, routed as template.yaml says."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from localstage.lambda_runtime import (
    AUTHORIZER_REFUSAL,
    LambdaContext,
    apply_authorizer_result,
    authorizer_event,
    http_event,
    load_handler,
)
from localstage.template import load_template, match_route
from localstage.workers import FunctionPool


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def body(self) -> Any:
        return json.loads(self.text)

    @property
    def error_code(self) -> str:
        return str(self.body["error"]["code"])


class Api:
    """Sends a request to the function that template.yaml routes it to, its authorizer first (as API Gateway does).

    The functions run in this process, or with `pools` each call in a Lambda execution environment of its
    own (a worker process of the local stage's pools). Races need the latter: Powertools keeps the request
    being resolved on a class that every resolver in a process shares, so no two threads of one process
    may run a handler at once.
    """

    def __init__(self, admin_token: str, pools: Mapping[str, FunctionPool] | None = None) -> None:
        self.template = load_template()
        self.admin_token = admin_token
        self.pools = pools

    def invoke_raw(self, event: dict[str, Any], function: str) -> Any:
        """What the function (its logical id in template.yaml) returns, as Lambda would pass it on."""
        if self.pools is not None:
            return self.pools[function].invoke(event).result
        spec = self.template.functions[function]
        return load_handler(spec.code_uri, spec.handler)(event, LambdaContext(function_name=function))

    def invoke(self, event: dict[str, Any], function: str) -> ApiResponse:
        result = self.invoke_raw(event, function)
        return ApiResponse(result["statusCode"], {k.lower(): v for k, v in result.get("headers", {}).items()},
                           result.get("body", ""))

    def request(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
                admin: bool = False, source_ip: str = "198.51.100.7") -> ApiResponse:
        headers = dict(headers or {})
        if admin:
            headers["Authorization"] = f"Bearer {self.admin_token}"
        found, _ = match_route(self.template.routes, method, path)
        if found is None:
            raise AssertionError(f"template.yaml has no route for {method} {path}")
        event = http_event(method, path, route_key=found.route.route_key,
                           path_parameters=found.path_parameters or None, headers=headers, body=body,
                           source_ip=source_ip)
        if found.route.authorizer is not None and not apply_authorizer_result(
                event, self.invoke_raw(authorizer_event(event), found.route.authorizer)):
            return ApiResponse(403, {"content-type": "application/json"}, AUTHORIZER_REFUSAL)
        return self.invoke(event, found.route.function)

    # Shorthands for the contract's calls.
    def create_event(self, **overrides: Any) -> dict[str, Any]:
        payload = {"name": "Spring Gala", "venue": "Hall A", "starts_at": "2030-04-01T19:00:00Z",
                   "currency": "EUR", "hold_seconds": 600,
                   "tiers": [{"name": "General", "capacity": 10, "price": 2500, "max_per_order": 6}]}
        payload.update(overrides)
        response = self.request("POST", "/events", body=payload, admin=True)
        assert response.status == 201, response.text
        return dict(response.body)

    def reserve(self, event_id: str, quantity: int = 1, *, key: str, tier_id: str | None = None,
                device: str | None = None) -> ApiResponse:
        body: dict[str, Any] = {"quantity": quantity}
        if tier_id:
            body["tier_id"] = tier_id
        headers = {"Idempotency-Key": key}
        if device:
            headers["X-Device-Id"] = device
        return self.request("POST", f"/events/{event_id}/reservations", body=body, headers=headers)

    def confirm(self, reservation_id: str, *, key: str, token: str = "tok_visa") -> ApiResponse:
        return self.request("POST", f"/reservations/{reservation_id}/confirm", body={"payment_token": token},
                            headers={"Idempotency-Key": key})

    def availability(self, event_id: str) -> dict[str, Any]:
        response = self.request("GET", f"/events/{event_id}/availability")
        assert response.status == 200, response.text
        return dict(response.body)
