"""Buyers are not authenticated: a device identifies them, and their network address is counted apart."""

from __future__ import annotations

import hashlib
from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Header
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from tickets.domain.reservations import Buyer

MAX_DEVICE_ID_LENGTH = 256
SECRET_MAX_LENGTH = 128

# The buyer's headers as routes declare them (OpenAPI). All optional to the resolver: a missing or
# malformed one is answered by the contract's rules below, never by a validation error.
DeviceId = Annotated[str | None, Header(alias="X-Device-Id", description=(
    f"Identifies the buyer for per-customer limits (the first {MAX_DEVICE_ID_LENGTH} characters count); "
    "without it, a hash of source IP, User-Agent and Accept-Language does."))]
ReservationSecret = Annotated[str | None, Header(alias="X-Reservation-Secret", description=(
    "The reservation_secret the reserve call answered. Missing or wrong: 404 reservation_not_found, as for "
    "an unknown id, and nothing changes."))]
AdmissionToken = Annotated[str | None, Header(alias="X-Admission-Token", description=(
    "The admission_token a poll of the event's queue answered once admitted (events with a waiting room only; "
    "ignored on others). Missing: 403 admission_required; forged, altered or another event's: 403 "
    "admission_invalid; past admission_expires_at: 403 admission_expired. Checked before inventory."))]


def _digest(basis: str) -> str:
    # Stored hashed, so a reservation row never holds an IP address or a device id in clear.
    return hashlib.sha256(basis.encode()).hexdigest()


def buyer(event: APIGatewayProxyEventV2, device_id: str | None) -> Buyer:
    """The fingerprint: the X-Device-Id header (`device_id`) when given, else source IP, User-Agent
    and Accept-Language; and the source address alone, for max_holds_per_ip."""
    source_ip = event.request_context.http.source_ip or ""
    device_id = (device_id or "").strip()[:MAX_DEVICE_ID_LENGTH]
    if device_id:
        basis = f"device:{device_id}"
    else:
        basis = "client:" + "|".join((source_ip, event.headers.get("user-agent") or "",
                                      event.headers.get("accept-language") or ""))
    return Buyer(fingerprint=_digest(basis), address=_digest(f"address:{source_ip}"))


def reservation_secret(header: str | None) -> str:
    """The X-Reservation-Secret header; '' when absent or not a secret's shape (it matches nothing)."""
    secret = header or ""
    if len(secret) > SECRET_MAX_LENGTH or not secret.isascii() or not secret.isprintable():
        return ""
    return secret
