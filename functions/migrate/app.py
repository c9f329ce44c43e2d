"""Applies the schema migrations as the master user, inside the VPC. DeployFunction invokes it at
deploy time with the app role's password ({"app_role_password": ...}); invoked with no password
(`sam remote invoke MigrateFunction`), it applies the migrations and leaves the passwords alone."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from tickets.observability import instrumented
from tickets.store.db import conninfo
from tickets.store.migrate import apply_when_reachable

REPLY_MARGIN_SECONDS = 60  # left to report a failure to DeployFunction before Lambda's timeout


def _migrate(event: dict[str, Any] | None, context: LambdaContext) -> dict[str, Any]:
    budget = context.get_remaining_time_in_millis() / 1000 - REPLY_MARGIN_SECONDS
    password = (event or {}).get("app_role_password")
    return {"applied": apply_when_reachable(conninfo, give_up_in_seconds=budget, app_role_password=password)}


lambda_handler = instrumented(_migrate, http=False)
