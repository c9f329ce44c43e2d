"""Retry deduplication with the Powertools idempotency utility on DynamoDB.

A request is keyed on its route (method and path) and its Idempotency-Key header, and its
body is validated against the first one. The stored result is the whole response, status and
body, a 4xx included; a 5xx is raised instead, so Powertools deletes the record and a retry
runs again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from pydantic import BaseModel

from tickets.edge.http import json_response
from tickets.refusals import ApiError, Conflict, ServiceUnavailable, Unprocessable

IDEMPOTENCY_HEADER = "idempotency-key"
KEY_MAX_LENGTH = 128
RECORD_TTL_SECONDS = 24 * 60 * 60

persistence_store = DynamoDBPersistenceLayer(table_name=os.environ.get("IDEMPOTENCY_TABLE", "tickets-idempotency"))
config = IdempotencyConfig(
    event_key_jmespath="[route, idempotency_key]",
    payload_validation_jmespath="body",
    raise_on_no_idempotency_key=True,
    expires_after_seconds=RECORD_TTL_SECONDS,
)

StoredResponse = dict[str, Any]


@idempotent_function(data_keyword_argument="request", persistence_store=persistence_store, config=config)
def _run_once(*, request: dict[str, Any], operation: Callable[[], StoredResponse]) -> StoredResponse:
    return operation()


def idempotency_key(app: APIGatewayHttpResolver, *, required: bool) -> str | None:
    key = app.current_event.headers.get(IDEMPOTENCY_HEADER)
    if key is None or key == "":
        if required:
            raise ApiError("This call needs an Idempotency-Key header (1-128 printable ASCII characters).",
                           status=400, code="idempotency_key_required")
        return None
    if len(key) > KEY_MAX_LENGTH or not all(" " <= ch <= "~" for ch in key):
        raise ApiError("The Idempotency-Key header must be 1-128 printable ASCII characters.",
                       status=400, code="invalid_idempotency_key")
    return key


def respond_once(app: APIGatewayHttpResolver, *, status: int, operation: Callable[[], BaseModel],
                 key_required: bool = True) -> Response[dict[str, Any]]:
    """Runs `operation` once per (route, Idempotency-Key) and returns its response each time."""

    def stored_response() -> StoredResponse:
        try:
            return {"status": status, "body": operation().model_dump(mode="json")}
        except ApiError as error:
            if error.status >= 500:
                raise
            return {"status": error.status, "body": error.body(), "headers": error.headers}

    key = idempotency_key(app, required=key_required)
    if key is None:
        stored = stored_response()
    else:
        event = app.current_event
        request = {
            "route": f"{event.request_context.http.method} {event.raw_path}",
            "idempotency_key": key,
            "body": event.json_body if event.body else None,
        }
        config.register_lambda_context(app.lambda_context)
        try:
            stored = _run_once(request=request, operation=stored_response)
        except IdempotencyAlreadyInProgressError as exc:
            raise Conflict("A request with this Idempotency-Key is still being processed; retry shortly.",
                           code="request_in_progress", headers={"Retry-After": "1"}) from exc
        except IdempotencyValidationError as exc:
            raise Unprocessable("This Idempotency-Key was used with a different request body.",
                                code="idempotency_key_reused") from exc
        except IdempotencyPersistenceLayerError as exc:
            raise ServiceUnavailable() from exc
    return json_response(stored["status"], stored["body"], stored.get("headers"))
