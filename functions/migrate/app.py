"""Applies the schema migrations after a deploy: `sam remote invoke MigrateFunction`."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from tickets.migrate import apply_migrations
from tickets.observability import instrumented


def _migrate(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return {"applied": apply_migrations(os.environ["DATABASE_URL"])}


lambda_handler = instrumented(_migrate, http=False)
