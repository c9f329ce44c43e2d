"""Calls the Lambda handlers with real API Gateway HTTP API events, through the local stage's gateway."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from localstage.lambda_runtime import LambdaContext, load_handler
from localstage.server import Function, Gateway, Response, lambda_response
from localstage.template import FunctionSpec, load_template
from localstage.workers import FunctionPool, Invocation


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    text: str

    @classmethod
    def of(cls, response: Response) -> ApiResponse:
        return cls(response.status, {name.lower(): value for name, value in response.headers}, response.body.decode())

    @property
    def body(self) -> Any:
        return json.loads(self.text)

    @property
    def error_code(self) -> str:
        return str(self.body["error"]["code"])


# reservation_id -> reservation_secret, learnt from reserve answers and sent as a holder would.
KNOWN_SECRETS: dict[str, str] = {}


@dataclass
class InProcess:
    """A function run in this process, with a pool's face towards the gateway."""

    spec: FunctionSpec
    timeout_seconds: float = 10.0  # template.yaml's Globals; a test may shorten it

    @property
    def name(self) -> str:
        return self.spec.logical_id

    def invoke(self, event: dict[str, Any]) -> Invocation:
        context = LambdaContext(function_name=self.name, timeout_seconds=self.timeout_seconds)
        result = load_handler(self.spec.code_uri, self.spec.handler)(event, context)
        return Invocation(result=result, duration_ms=0.0, init_duration_ms=None)


class Api:
    """Sends a request through the local stage's gateway to the function template.yaml routes it to (its
    authorizer first), as API Gateway does.

    The functions run in this process, or with `pools` each call in a Lambda execution environment of its
    own (a worker process of the local stage's pools). Races need the latter: Powertools keeps the request
    being resolved on a class that every resolver in a process shares, so no two threads of one process
    may run a handler at once.
    """

    def __init__(self, admin_token: str, pools: Mapping[str, FunctionPool] | None = None) -> None:
        template = load_template()
        self.admin_token = admin_token
        # What the holder knows, shared by every client of the test process (the race tests drive
        # one hold through several clients).
        self.secrets = KNOWN_SECRETS
        self.functions: Mapping[str, Function] = pools or {
            name: InProcess(spec) for name, spec in template.functions.items()}
        self.gateway = Gateway(template.routes, self.functions)

    def invoke_raw(self, event: dict[str, Any], function: str) -> Any:
        """What the function (its logical id in template.yaml) returns, as Lambda would pass it on."""
        return self.functions[function].invoke(event).result

    def invoke(self, event: dict[str, Any], function: str) -> ApiResponse:
        return ApiResponse.of(lambda_response(self.invoke_raw(event, function)))

    def request(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
                admin: bool = False, source_ip: str = "198.51.100.7") -> ApiResponse:
        headers = {name.lower(): value for name, value in (headers or {}).items()}
        if admin:
            headers["authorization"] = f"Bearer {self.admin_token}"
        parts = path.split("/")
        if len(parts) > 2 and parts[1] == "reservations" and parts[2] in self.secrets:
            headers.setdefault("x-reservation-secret", self.secrets[parts[2]])
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            headers.setdefault("content-type", "application/json")
        response, _ = self.gateway.handle(method, path, headers=list(headers.items()), source_ip=source_ip,
                                          body=body.encode() if isinstance(body, str) else body, host="")
        answer = ApiResponse.of(response)
        self._learn_secret(answer)
        return answer

    def shorten_timeouts(self, seconds: float) -> None:
        """Runs the in-process functions as if their Timeout were `seconds`."""
        for function in self.functions.values():
            if isinstance(function, InProcess):
                function.timeout_seconds = seconds

    def _learn_secret(self, response: ApiResponse) -> None:
        if response.status == 201 and response.text.startswith("{"):
            body = response.body
            if isinstance(body, dict) and "reservation_secret" in body:
                self.secrets[body["reservation_id"]] = body["reservation_secret"]

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
