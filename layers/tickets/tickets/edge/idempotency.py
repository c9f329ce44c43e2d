"""Retry deduplication with the Powertools idempotency utility on DynamoDB.

A request is keyed on its route (method and path), its Idempotency-Key header and who sent it
(the buyer, or the reservation secret), so that nobody replays another caller's answer by
sending the same key; its body is validated against the first one. The stored result is the whole response, status and
body, a 4xx included; a 5xx or a request_in_progress is raised instead, so Powertools deletes
the record and a retry runs again. The operation is given the key too: the database keys its
writes by it, so a retry that runs again (the record lost to a fault) never does the work twice.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Header
from pydantic import BaseModel

from tickets.edge.http import json_response, refusal_body, refusal_headers, refusal_status
from tickets.refusals import Refusal
from tickets.store.db import StoreUnavailable
from tickets.store.idempotency_records import persistence_store

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

IDEMPOTENCY_HEADER = "Idempotency-Key"
KEY_MAX_LENGTH = 128
_KEY = (f"1-{KEY_MAX_LENGTH} printable ASCII characters. A retry with the same key and body gets the first "
        "answer, status and body, without the work being done again; the same key with another body: 422 "
        "idempotency_key_reused; while the first call runs: 409 request_in_progress.")
# The header as a route declares it (OpenAPI; the resolver answers its absence with idempotency_key_required).
IdempotencyKey = Annotated[str, Header(alias=IDEMPOTENCY_HEADER, description=f"{_KEY} Missing: 400 "
                                                                             "idempotency_key_required.")]
OptionalIdempotencyKey = Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER,
                                                      description=f"Optional: deduplicates retries when given. {_KEY}")]
RECORD_TTL_SECONDS = 24 * 60 * 60
# What a route answers beside its own refusals when it takes an Idempotency-Key.
IDEMPOTENT_REFUSALS = ("idempotency_key_required", "invalid_idempotency_key", "idempotency_key_reused",
                       "request_in_progress")

StoredResponse = dict[str, Any]
RunOnce = Callable[..., StoredResponse]


def _run_once(*, request: dict[str, Any], operation: Callable[[], StoredResponse]) -> StoredResponse:
    # Its module and name are part of every record's key: renaming it would orphan the stored answers.
    return operation()


@functools.cache
def _idempotent() -> tuple[IdempotencyConfig, RunOnce]:
    """The idempotency config and `_run_once` under it, made on the first request with a key:
    the Powertools idempotency package imports boto3, which a cold start need not load."""
    from aws_lambda_powertools.utilities.idempotency import (  # noqa: PLC0415 - deferred, as the docstring says
        IdempotencyConfig,
        idempotent_function,
    )

    config = IdempotencyConfig(
        event_key_jmespath="[route, idempotency_key, caller]",
        payload_validation_jmespath="body",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=RECORD_TTL_SECONDS,
    )
    guarded = idempotent_function(data_keyword_argument="request", persistence_store=persistence_store(),
                                  config=config)(_run_once)
    return config, guarded


def idempotency_key(key: str | None, *, required: bool) -> str | None:
    """The route's Idempotency-Key header, checked: None when absent and optional."""
    if key is None or key == "":
        if required:
            raise Refusal("idempotency_key_required")
        return None
    if len(key) > KEY_MAX_LENGTH or not all(" " <= ch <= "~" for ch in key):
        raise Refusal("invalid_idempotency_key")
    return key


def respond_once(app: APIGatewayHttpResolver, *, status: int, operation: Callable[[str | None], BaseModel],
                 caller: str, key: str | None, key_required: bool = True) -> Response[dict[str, Any]]:
    """Runs `operation(key)` once per (route, Idempotency-Key `key`, caller) and returns its response each time."""
    key = idempotency_key(key, required=key_required)

    def stored_response() -> StoredResponse:
        try:
            return {"status": status, "body": operation(key).model_dump(mode="json")}
        except Refusal as refusal:
            # Never kept: the work is unfinished, and its retry must run again.
            if refusal_status(refusal) >= 500 or refusal.code == "request_in_progress":
                raise
            return {"status": refusal_status(refusal), "body": refusal_body(refusal),
                    "headers": refusal_headers(refusal)}

    if key is None:
        stored = stored_response()
    else:
        event = app.current_event
        request = {
            "route": f"{event.request_context.http.method} {event.raw_path}",
            "idempotency_key": key,
            "caller": hashlib.sha256(caller.encode()).hexdigest(),
            "body": event.json_body if event.body else None,
        }
        from aws_lambda_powertools.utilities.idempotency.exceptions import (  # noqa: PLC0415 - loaded by _idempotent
            IdempotencyAlreadyInProgressError,
            IdempotencyPersistenceLayerError,
            IdempotencyValidationError,
        )

        config, run_once = _idempotent()
        config.register_lambda_context(app.lambda_context)
        try:
            stored = run_once(request=request, operation=stored_response)
        except IdempotencyAlreadyInProgressError as exc:
            raise Refusal("request_in_progress") from exc
        except IdempotencyValidationError as exc:
            raise Refusal("idempotency_key_reused") from exc
        except IdempotencyPersistenceLayerError as exc:
            raise StoreUnavailable("the idempotency table failed") from exc
    return json_response(stored["status"], stored["body"], stored.get("headers"))
