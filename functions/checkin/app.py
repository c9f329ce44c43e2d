"""POST /tickets/{ticket_code}/check-in (staff): admit a ticket once."""

from __future__ import annotations

from typing import Any

from tickets.domain import checkin
from tickets.edge.http import Response, create_app, http_handler, json_response, organizer_only, route_responses
from tickets.models.checkin import CheckIn

app = create_app()


@app.post("/tickets/<ticket_code>/check-in", summary="Check a ticket in", tags=["tickets"],
          **organizer_only(route_responses(200, CheckIn, "Admitted", refusals=checkin.CHECK_IN_REFUSALS)))
def check_in(ticket_code: str) -> Response[dict[str, Any]]:
    return json_response(200, checkin.check_in(ticket_code))


lambda_handler = http_handler(app)
