"""The HTTP edge shared by every API function: the resolver, refusals as responses, the guards.

Handlers stay thin: they parse (the resolver validates bodies against the pydantic models),
call the domain, and shape the response with `json_response`. This is the only module that
knows HTTP statuses: a domain `Refusal` gets the status and message of its catalogue entry
(tickets/refusals.py), a `StoreUnavailable` becomes 503 `unavailable`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, content_types

# Re-exported: the handlers import it from here, so that `import tickets` (which makes Powertools'
# event_handler package lazy, tickets/lazy_package.py) comes before any Powertools import of theirs.
from aws_lambda_powertools.event_handler import Response as Response  # noqa: PLC0414 - an explicit re-export
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel

from tickets.edge.auth import organizer_verdict
from tickets.models.common import ErrorResponse
from tickets.observability import LambdaHandler, instrumented, logger
from tickets.refusals import CATALOGUE, COMMON, Refusal, statuses
from tickets.store.db import StoreUnavailable, time_budget

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.models import SecurityScheme

MAX_BODY_BYTES = 64 * 1024
RETRY_AFTER_SECONDS = "1"
# Deeper JSON is refused before parsing: no request of the API nests past a few levels, and the
# parser's recursion limit (about 1,000) must never be what stops one.
MAX_JSON_DEPTH = 32
# Store calls end this long before the function's timeout, leaving time to answer 503.
ANSWER_MARGIN_SECONDS = 1.5

# Required headers whose absence the contract answers with a refusal of its own (header -> code).
MISSING_HEADERS = {kind.missing_header.lower(): kind.code for kind in CATALOGUE.values() if kind.missing_header}

# The organizer/staff routes' bearer token (checked by the authorizer, tickets.edge.auth).
ORGANIZER_SCHEME = "organizerToken"
ORGANIZER_SECURITY: list[dict[str, list[str]]] = [{ORGANIZER_SCHEME: []}]
# Plain data, which the OpenAPI document validates into an HTTPBearer when it is generated: Powertools'
# OpenAPI models (some 40 pydantic classes, built at import) then never load in a function.
SECURITY_SCHEMES = cast("dict[str, SecurityScheme]", {
    ORGANIZER_SCHEME: {"type": "http", "scheme": "bearer",
                       "description": "Organizer and staff calls: Authorization: Bearer <token> "
                                      "(TICKETS_ADMIN_TOKEN on the local stage; the AdminTokenSecretArn "
                                      "secret on AWS). Without it: 401 unauthorized."},
})


def route_responses(status: int, model: type[BaseModel], description: str, *,
                    refusals: Iterable[str] = ()) -> dict[int, OpenAPIResponse]:
    """OpenAPI `responses` of a route: its success and, per status, the refusal codes it can answer."""
    responses: dict[int, OpenAPIResponse] = {
        status: {"description": description, "content": {"application/json": {"model": model}}}}
    for error_status, codes in statuses([*refusals, *COMMON]).items():
        responses[error_status] = {"description": "; ".join(CATALOGUE[code].description for code in codes),
                                   "content": {"application/json": {"model": ErrorResponse}}}
    return responses


def organizer_only(responses: dict[int, OpenAPIResponse]) -> dict[str, Any]:
    """A route's protection, declared once (`@app.post(path, **organizer_only(route_responses(...)))`):
    its OpenAPI security and 401 response, and the function-side check (`organizer_routes`) follow."""
    unauthorized = route_responses(0, ErrorResponse, "", refusals=["unauthorized"])[401]
    return {"security": ORGANIZER_SECURITY, "responses": dict(sorted({**responses, 401: unauthorized}.items()))}


def json_response(status: int, body: BaseModel | dict[str, Any],
                  headers: dict[str, str] | None = None) -> Response[dict[str, Any]]:
    payload = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=payload,
                    headers=headers)


def refusal_status(refusal: Refusal) -> int:
    return refusal.kind.status


def refusal_body(refusal: Refusal) -> dict[str, Any]:
    return {"error": {"code": refusal.code, "message": refusal.message, **refusal.fields}}


def refusal_headers(refusal: Refusal) -> dict[str, str]:
    return {"Retry-After": RETRY_AFTER_SECONDS} if refusal.kind.retry_after else {}


def refusal_response(refusal: Refusal) -> Response[dict[str, Any]]:
    return json_response(refusal_status(refusal), refusal_body(refusal), refusal_headers(refusal))


def _parse_json(text: str) -> Any:
    """json.loads, with every way it can refuse a body reported as invalid JSON (a number of more
    than 4,300 digits raises a plain ValueError, which would otherwise be a 500)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise json.JSONDecodeError(str(exc), text, 0) from exc


def create_app() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=_parse_json)
    app.configure_openapi(security_schemes=SECURITY_SCHEMES)  # what organizer_only's routes refer to

    @app.exception_handler(Refusal)
    def _refused(refusal: Refusal) -> Response[dict[str, Any]]:
        if refusal.kind.status >= 500:
            logger.warning("request failed", extra={"code": refusal.code})
        return refusal_response(refusal)

    @app.exception_handler(StoreUnavailable)
    def _store_unavailable(error: StoreUnavailable) -> Response[dict[str, Any]]:
        logger.warning("a backing store is unavailable", extra={"reason": str(error)})
        return refusal_response(Refusal("unavailable"))

    @app.exception_handler(RequestValidationError)
    def _validation_error(error: RequestValidationError) -> Response[dict[str, Any]]:
        problems = error.errors()
        if any(problem.get("type") == "json_invalid" for problem in problems):
            return refusal_response(Refusal("malformed_json"))
        # A required header (declared with Header() in the route) whose absence has a refusal of its
        # own gets it, once nothing else is wrong: a bad body is still answered first.
        missing = [name for problem in problems if (name := _missing_header(problem)) in MISSING_HEADERS]
        problems = [problem for problem in problems if _missing_header(problem) not in MISSING_HEADERS]
        if missing and not problems:
            return refusal_response(Refusal(MISSING_HEADERS[missing[0]]))
        details = [
            {"field": ".".join(str(part) for part in problem.get("loc", ()) if part != "body") or "body",
             "message": problem.get("msg", "invalid"), "type": problem.get("type", "invalid")}
            for problem in problems
        ]
        return refusal_response(Refusal("validation_error", details=details))

    @app.not_found
    def _no_route(_: NotFoundError) -> Response[dict[str, Any]]:
        return refusal_response(Refusal("not_found"))

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response[dict[str, Any]]:
        logger.exception("unexpected error")
        return refusal_response(Refusal("internal_error"))

    return app


def _missing_header(problem: dict[str, Any]) -> str | None:
    """The header (lower case) a validation problem reports missing, if that is what it reports."""
    location = tuple(problem.get("loc", ()))
    if problem.get("type") == "missing" and len(location) == 2 and location[0] == "header":
        return str(location[1]).lower()
    return None


def organizer_routes(app: APIGatewayHttpResolver) -> frozenset[str]:
    """Route keys ("POST /events") whose declared security is the organizer token."""
    # Powertools keeps the registered routes on these two lists; each Route carries what its
    # decorator declared (method, OpenAPI path, security).
    routes = app._static_routes + app._dynamic_routes
    return frozenset(f"{route.method} {route.openapi_path}" for route in routes
                     if any(ORGANIZER_SCHEME in requirement for requirement in route.security or ()))


def _body_bytes(event: dict[str, Any]) -> bytes | None:
    body = event.get("body")
    if body is None:
        return None
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return b"\xff"  # undecodable: reported as malformed JSON
    return str(body).encode()


def _nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in `text` (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _guard_request(event: dict[str, Any]) -> Refusal | None:
    """Checks that come before routing: body size, and a body the JSON parser will see as JSON."""
    raw = _body_bytes(event)
    if raw is None:
        return None
    if len(raw) > MAX_BODY_BYTES:
        return Refusal("payload_too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Refusal("malformed_json")
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _nesting_depth(text) > MAX_JSON_DEPTH:
        return Refusal("validation_error", details=[{
            "field": "body", "message": f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "type": "too_deep"}])
    event["body"], event["isBase64Encoded"] = text, False
    # JSON is the only format: a body sent as a form (curl -d without -H) is still read as JSON.
    headers = event.setdefault("headers", {}) or {}
    event["headers"] = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    event["headers"]["content-type"] = content_types.APPLICATION_JSON
    return None


def http_handler(app: APIGatewayHttpResolver) -> LambdaHandler:
    """The Lambda entry point of an API function.

    The organizer check runs before routing, on the routes whose declared security asks for it,
    so a caller without the token learns 401 and nothing about the body's validity.
    """
    protected = organizer_routes(app)

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        rejection = _guard_request(event)
        if rejection is None and event.get("routeKey") in protected and not organizer_verdict(event):
            rejection = Refusal("unauthorized")
        if rejection is not None:
            return {"statusCode": refusal_status(rejection),
                    "headers": {"Content-Type": content_types.APPLICATION_JSON, **refusal_headers(rejection)},
                    "body": json.dumps(refusal_body(rejection), separators=(",", ":")), "isBase64Encoded": False}
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        if remaining_ms is None:
            return app.resolve(event, context)
        with time_budget(remaining_ms() / 1000 - ANSWER_MARGIN_SECONDS):
            return app.resolve(event, context)

    return instrumented(handler)

