"""The stack's deploy-time custom resources (SchemaMigrations, DatabaseDeletionProtectionSwitch),
outside the VPC; invoked by hand (`sam remote invoke DeployFunction`), it re-runs the migrations."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from tickets.edge.cloudformation import REPLY_MARGIN_SECONDS, handle, is_custom_resource_request, run_migrations
from tickets.observability import instrumented


def _deploy(event: dict[str, Any] | None, context: LambdaContext) -> dict[str, Any]:
    def remaining_seconds() -> float:
        return context.get_remaining_time_in_millis() / 1000

    if is_custom_resource_request(event):
        assert event is not None
        handle(event, remaining_seconds)  # replies to CloudFormation itself, success or failure
        return {}
    return {"applied": run_migrations(remaining_seconds() - REPLY_MARGIN_SECONDS)}


lambda_handler = instrumented(_deploy, http=False)
