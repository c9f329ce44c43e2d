"""Organizer and staff authentication: the API Gateway Lambda authorizer and the check behind it.

On AWS the HTTP API runs the authorizer function before the organizer and staff routes; the
local stage does the same from template.yaml. The authorizer checks `Authorization: Bearer
<token>` against the organizer token (a Secrets Manager secret on AWS, TICKETS_ADMIN_TOKEN
locally) and always lets the request through with its verdict in the context: an HTTP API
cannot shape the body of a refusal, and the contract wants 401 `unauthorized` in its own error
shape, so the function renders the refusal (tickets.edge.http), failing closed when the
verdict is missing (`organizer_verdict`).
"""

from __future__ import annotations

import hmac
from typing import Any

from tickets.settings import settings

ORGANIZER = "organizer"
ANONYMOUS = "anonymous"
SECRET_CACHE_SECONDS = 300  # a rotated token is honoured within five minutes


def organizer_token() -> str:
    """The expected token: the secret named by ADMIN_TOKEN_SECRET_ARN, else TICKETS_ADMIN_TOKEN."""
    config = settings()
    if config.admin_token_secret_arn:
        # Imported here: the parameters utility brings boto3, needed only where the token is a secret (AWS).
        from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415

        return str(parameters.get_secret(config.admin_token_secret_arn, max_age=SECRET_CACHE_SECONDS)).strip()
    return config.admin_token


def bearer_token(headers: dict[str, str] | None) -> str | None:
    header = next((value for name, value in (headers or {}).items() if name.lower() == "authorization"), None)
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authorize(event: dict[str, Any]) -> dict[str, Any]:
    """A simple-response (payload 2.0) authorizer result carrying the caller's role."""
    expected = organizer_token()
    presented = bearer_token(event.get("headers"))
    valid = bool(expected) and presented is not None and hmac.compare_digest(presented.encode(), expected.encode())
    return {"isAuthorized": True, "context": {"role": ORGANIZER if valid else ANONYMOUS}}


def organizer_verdict(event: dict[str, Any]) -> bool:
    """True only when the authorizer vouched for an organizer in the request context."""
    context = ((event.get("requestContext") or {}).get("authorizer") or {}).get("lambda") or {}
    return bool(context.get("role") == ORGANIZER)
