"""Calls the Lambda handlers with real API Gateway HTTP API events, routed as template.yaml says."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localstage.lambda_runtime import (
    AUTHORIZER_REFUSAL,
    ROOT,
    LambdaContext,
    apply_authorizer_result,
    authorizer_event,
    http_event,
)
from localstage.template import load_template, match_route


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


_environments = threading.local()


def _handler_for(code_uri: str) -> Any:
    """One copy of each function module per thread. It does not make a thread a Lambda environment:
    Powertools keeps the request being resolved on a class all resolvers share, so concurrent
    calls go through tests/integration/environments.py (one process per environment) instead."""
    loaded: dict[str, Any] = _environments.__dict__.setdefault("handlers", {})
    if code_uri not in loaded:
        source = (ROOT / code_uri / "app.py").resolve()
        name = f"function_{source.parent.name}_{threading.get_ident()}"
        spec = importlib.util.spec_from_file_location(name, source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        loaded[code_uri] = module.lambda_handler
    return loaded[code_uri]


class Api:
    """Sends a request to the function that template.yaml routes it to."""

    def __init__(self, admin_token: str) -> None:
        self.template = load_template()
        self.admin_token = admin_token

    def invoke_raw(self, event: dict[str, Any], code_uri: str, function: str = "local") -> Any:
        """What the handler returns, as Lambda would pass it on."""
        return _handler_for(code_uri)(event, LambdaContext(function_name=function))

    def invoke(self, event: dict[str, Any], code_uri: str, function: str = "local") -> ApiResponse:
        result = self.invoke_raw(event, code_uri, function)
        return ApiResponse(result["statusCode"], {k.lower(): v for k, v in result.get("headers", {}).items()},
                           result.get("body", ""))

    def request(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
                admin: bool = False, source_ip: str = "198.51.100.7") -> ApiResponse:
        headers = dict(headers or {})
        if admin:
            headers["Authorization"] = f"Bearer {self.admin_token}"
        found, _ = match_route(self.template.routes, method, path)
        if found is not None:
            function = self.template.functions[found.route.function]
            event = http_event(method, path, route_key=found.route.route_key,
                               path_parameters=found.path_parameters or None, headers=headers, body=body,
                               source_ip=source_ip)
            if found.route.authorizer is not None:  # API Gateway runs the route's authorizer first
                authorizer = self.template.functions[found.route.authorizer]
                verdict = self.invoke_raw(authorizer_event(event), authorizer.code_uri, authorizer.logical_id)
                if not apply_authorizer_result(event, verdict):
                    return ApiResponse(403, {"content-type": "application/json"}, AUTHORIZER_REFUSAL)
            return self.invoke(event, function.code_uri, function.logical_id)
        raise AssertionError(f"template.yaml has no route for {method} {path}")

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


def repo_path(*parts: str) -> Path:
    return ROOT.joinpath(*parts)
