"""What Lambda and API Gateway give a handler: the payload 2.0 event, the context, the module.

Shared by the tests, `make invoke` and the local stage's workers, so that every local run
calls a handler exactly as the deployed HTTP API does.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def load_module(code_uri: str, module_name: str = "app") -> ModuleType:
    """Imports a function's module once, under a name of its own (every function has an app.py)."""
    source = (ROOT / code_uri / f"{module_name.replace('.', '/')}.py").resolve()
    unique = f"function_{source.parent.name}_{module_name.replace('.', '_')}"
    module = sys.modules.get(unique)
    if module is None:
        spec = importlib.util.spec_from_file_location(unique, source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        spec.loader.exec_module(module)
    return module


def load_handler(code_uri: str, handler: str = "app.lambda_handler") -> Handler:
    """A function's handler (template.yaml's Handler: module.attribute), imported as the Lambda runtime does."""
    module_name, _, attribute = handler.rpartition(".")
    return getattr(load_module(code_uri, module_name), attribute)  # type: ignore[no-any-return]


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str = "local"
    memory_limit_in_mb: int = 512
    timeout_seconds: float = 10.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def http_event(
    method: str,
    path: str,
    *,
    route_key: str | None = None,
    path_parameters: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    query: str = "",
    body: str | bytes | dict[str, Any] | list[Any] | None = None,
    source_ip: str = "127.0.0.1",
    host: str = "localhost",
) -> dict[str, Any]:
    """An API Gateway HTTP API payload format 2.0 event, as the $default stage sends it."""
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    is_base64 = False
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        lowered.setdefault("content-type", "application/json")
    if isinstance(body, bytes):
        raw = body
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            body, is_base64 = base64.b64encode(raw).decode("ascii"), True
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key or f"{method} {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0].split(":", 1)[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key or f"{method} {path}",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if query:
        event["queryStringParameters"] = query_parameters(query)
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if body is not None:
        event["body"] = body
    return event


def query_parameters(raw_query: str) -> dict[str, str]:
    """queryStringParameters as HTTP APIs give them: decoded, repeated names joined with commas."""
    values: dict[str, list[str]] = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        values.setdefault(unquote(name), []).append(unquote(value))
    return {name: ",".join(items) for name, items in values.items()}


def authorizer_event(request: dict[str, Any]) -> dict[str, Any]:
    """The payload 2.0 REQUEST event API Gateway sends a Lambda authorizer for this request."""
    event = {key: value for key, value in request.items() if key not in ("body", "isBase64Encoded")}
    context = request["requestContext"]
    event.update({
        "type": "REQUEST",
        "routeArn": (f"arn:aws:execute-api:us-east-1:{context['accountId']}:{context['apiId']}/"
                     f"{context['stage']}/{request['routeKey'].replace(' ', '')}"),
        "identitySource": [],
    })
    return event


# What API Gateway answers, with 403, when a route's authorizer refuses the request.
AUTHORIZER_REFUSAL = '{"message":"Forbidden"}'


def apply_authorizer_result(request: dict[str, Any], result: Any) -> bool:
    """Puts a simple-response authorizer's context into the request, as the function receives it;
    False when the authorizer refused it (API Gateway then answers 403 AUTHORIZER_REFUSAL)."""
    if not isinstance(result, dict) or result.get("isAuthorized") is not True:
        return False
    request["requestContext"]["authorizer"] = {"lambda": dict(result.get("context") or {})}
    return True


def scheduled_event() -> dict[str, Any]:
    """The event EventBridge sends for a schedule rule."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:000000000000:rule/tickets-expire"],
        "detail": {},
    }
