"""POST /tickets/{ticket_code}/check-in (staff): admit a ticket once."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from tickets.domain import checkin
from tickets.edge.http import (
    ORGANIZER_SECURITY,
    create_app,
    error_responses,
    http_handler,
    json_response,
    success_response,
)
from tickets.models import CheckIn

app = create_app()


@app.post("/tickets/<ticket_code>/check-in", summary="Check a ticket in", tags=["tickets"],
          security=ORGANIZER_SECURITY,
          responses={**success_response(200, CheckIn, "Admitted"),
                     **error_responses({
                         401: "Missing or wrong staff token (unauthorized)",
                         404: "No such ticket (ticket_not_found)",
                         409: "already_checked_in (with the first checked_in_at), ticket_void",
                     })})
def check_in(ticket_code: str) -> Response[dict[str, Any]]:
    return json_response(200, checkin.check_in(ticket_code))


lambda_handler = http_handler(app, organizer_routes=frozenset({"POST /tickets/{ticket_code}/check-in"}))
