"""The HTTP API's Lambda authorizer for organizer and staff routes (POST /events, check-in)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from tickets.edge.auth import authorize
from tickets.observability import instrumented


def _authorize(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return authorize(event)


lambda_handler = instrumented(_authorize, http=False)
