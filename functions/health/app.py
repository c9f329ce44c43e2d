"""GET /health: 200 once the database and the idempotency table answer."""

from __future__ import annotations

from typing import Any

from tickets.domain import health
from tickets.edge.http import Response, create_app, http_handler, json_response, route_responses
from tickets.models.operations import Health

app = create_app()


@app.get("/health", summary="Readiness", tags=["health"],
         responses=route_responses(200, Health, "Database and idempotency table answer"))
def get_health() -> Response[dict[str, Any]]:
    health.check()
    return json_response(200, Health(status="ok"))


lambda_handler = http_handler(app)
