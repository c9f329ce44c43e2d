"""Applies the schema migrations: at deploy time as a CloudFormation custom resource
(SchemaMigrations in template.yaml), or invoked by hand (`sam remote invoke MigrateFunction`)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from crhelper import CfnResource

from tickets.observability import instrumented
from tickets.store.db import conninfo
from tickets.store.migrate import apply_when_reachable

# One stable id: an update re-runs the migrations in place instead of replacing the resource.
PHYSICAL_ID = "tickets-schema"
REPLY_MARGIN_SECONDS = 60  # left to report a failure to CloudFormation before Lambda's timeout

custom_resource = CfnResource(log_level="INFO", boto_level="WARNING", sleep_on_delete=0)


@custom_resource.create
@custom_resource.update
def _apply_on_deploy(event: dict[str, Any], context: LambdaContext) -> str:
    applied = _apply(context)
    custom_resource.Data["Applied"] = ",".join(applied) or "none"
    return PHYSICAL_ID


@custom_resource.delete
def _keep_on_delete(event: dict[str, Any], context: LambdaContext) -> None:
    """The schema goes with the database (and its final snapshot), not with this resource."""


def _apply(context: LambdaContext) -> list[str]:
    budget = context.get_remaining_time_in_millis() / 1000 - REPLY_MARGIN_SECONDS
    return apply_when_reachable(conninfo, give_up_in_seconds=budget)


def _migrate(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "RequestType" in event and "ResponseURL" in event:
        custom_resource(event, context)  # replies to CloudFormation itself, success or failure
        return {}
    return {"applied": _apply(context)}


lambda_handler = instrumented(_migrate, http=False)
