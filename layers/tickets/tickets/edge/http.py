"""The HTTP side shared by every API function: the resolver, its error mapping and guards.

Handlers stay thin: they parse (the resolver validates bodies against the pydantic models),
call the domain, and shape the response with `json_response`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import BaseModel

from tickets.edge.auth import organizer_rejection
from tickets.models import ErrorResponse
from tickets.observability import LambdaHandler, instrumented, logger
from tickets.refusals import ApiError

MAX_BODY_BYTES = 64 * 1024

# OpenAPI descriptions of the errors every route may answer with.
COMMON_ERRORS: dict[int, str] = {
    400: "Malformed JSON",
    413: "Body over 64 KiB",
    422: "A field of the wrong type or out of range (validation_error, with details)",
    503: "A backing store is down (unavailable, with Retry-After)",
}


# OpenAPI: the organizer/staff routes' bearer token (checked by the authorizer, tickets.edge.auth).
ORGANIZER_SCHEME = "organizerToken"
ORGANIZER_SECURITY: list[dict[str, list[str]]] = [{ORGANIZER_SCHEME: []}]


def error_responses(extra: dict[int, str]) -> dict[int, dict[str, Any]]:
    """OpenAPI `responses` for a route: the common errors plus its own."""
    described = {**COMMON_ERRORS, **extra}
    return {
        status: {"description": text, "content": {"application/json": {"model": ErrorResponse}}}
        for status, text in sorted(described.items())
    }


def success_response(status: int, model: type[BaseModel], description: str) -> dict[int, dict[str, Any]]:
    return {status: {"description": description, "content": {"application/json": {"model": model}}}}


def json_response(status: int, body: BaseModel | dict[str, Any],
                  headers: dict[str, str] | None = None) -> Response[dict[str, Any]]:
    payload = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=payload,
                    headers=headers)


def error_response(error: ApiError) -> Response[dict[str, Any]]:
    return json_response(error.status, error.body(), error.headers)


def create_app() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)

    @app.exception_handler(ApiError)
    def _api_error(error: ApiError) -> Response[dict[str, Any]]:
        if error.status >= 500:
            logger.warning("request failed", extra={"code": error.code, "error_message": error.message})
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    def _validation_error(error: RequestValidationError) -> Response[dict[str, Any]]:
        problems = error.errors()
        if any(problem.get("type") == "json_invalid" for problem in problems):
            return error_response(ApiError("The request body is not valid JSON.", status=400,
                                           code="malformed_json"))
        details = [
            {"field": ".".join(str(part) for part in problem.get("loc", ()) if part != "body") or "body",
             "message": problem.get("msg", "invalid"), "type": problem.get("type", "invalid")}
            for problem in problems
        ]
        fields = ", ".join(sorted({detail["field"] for detail in details}))
        return error_response(ApiError(f"Invalid request: check {fields}.", status=422,
                                       code="validation_error", details=details))

    @app.not_found
    def _no_route(_: NotFoundError) -> Response[dict[str, Any]]:
        return error_response(ApiError("No such route.", status=404, code="not_found"))

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response[dict[str, Any]]:
        logger.exception("unexpected error")
        return error_response(ApiError("An unexpected error occurred; it has been logged.", status=500,
                                       code="internal_error"))

    return app


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


def _guard_request(event: dict[str, Any]) -> ApiError | None:
    """Checks that come before routing: body size, and a body the JSON parser will see as JSON."""
    raw = _body_bytes(event)
    if raw is None:
        return None
    if len(raw) > MAX_BODY_BYTES:
        return ApiError("The request body is larger than 64 KiB.", status=413, code="payload_too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return ApiError("The request body is not valid UTF-8 JSON.", status=400, code="malformed_json")
    event["body"], event["isBase64Encoded"] = text, False
    # JSON is the only format: a body sent as a form (curl -d without -H) is still read as JSON.
    headers = event.setdefault("headers", {}) or {}
    event["headers"] = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    event["headers"]["content-type"] = content_types.APPLICATION_JSON
    return None


def http_handler(app: APIGatewayHttpResolver, *, organizer_routes: frozenset[str] = frozenset()) -> LambdaHandler:
    """The Lambda entry point of an API function.

    organizer_routes: route keys ("POST /events") that need the organizer token, as vouched for by
    the authorizer (tickets.edge.auth). It is checked before routing, so a caller without it learns 401
    and nothing about the body's validity.
    """

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        rejection = _guard_request(event)
        if rejection is None and event.get("routeKey") in organizer_routes:
            rejection = organizer_rejection(event)
        if rejection is not None:
            return {"statusCode": rejection.status, "headers": {"Content-Type": content_types.APPLICATION_JSON,
                                                                **rejection.headers},
                    "body": json.dumps(rejection.body(), separators=(",", ":")), "isBase64Encoded": False}
        return app.resolve(event, context)

    return instrumented(handler)
