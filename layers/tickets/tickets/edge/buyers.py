"""Buyers are not authenticated: a device identifies them, and their network address is counted apart."""

from __future__ import annotations

import hashlib

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from tickets.domain.reservations import Buyer

MAX_DEVICE_ID_LENGTH = 256


def _digest(basis: str) -> str:
    # Stored hashed, so a reservation row never holds an IP address or a device id in clear.
    return hashlib.sha256(basis.encode()).hexdigest()


def buyer(event: APIGatewayProxyEventV2) -> Buyer:
    """The fingerprint: the X-Device-Id header when given, else source IP, User-Agent and
    Accept-Language; and the source address alone, for max_holds_per_ip."""
    source_ip = event.request_context.http.source_ip or ""
    device_id = (event.headers.get("x-device-id") or "").strip()[:MAX_DEVICE_ID_LENGTH]
    if device_id:
        basis = f"device:{device_id}"
    else:
        basis = "client:" + "|".join((source_ip, event.headers.get("user-agent") or "",
                                      event.headers.get("accept-language") or ""))
    return Buyer(fingerprint=_digest(basis), address=_digest(f"address:{source_ip}"))


SECRET_MAX_LENGTH = 128


def reservation_secret(event: APIGatewayProxyEventV2) -> str:
    """The X-Reservation-Secret header; '' when absent or not a secret's shape (it matches nothing)."""
    secret = event.headers.get("x-reservation-secret") or ""
    if len(secret) > SECRET_MAX_LENGTH or not secret.isascii() or not secret.isprintable():
        return ""
    return secret
