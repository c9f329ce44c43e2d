"""Buyer fingerprinting: buyers are not authenticated, so a device identifies them."""

from __future__ import annotations

import hashlib

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

MAX_DEVICE_ID_LENGTH = 256


def buyer_fingerprint(event: APIGatewayProxyEventV2) -> str:
    """The X-Device-Id header when given, else a hash of source IP, User-Agent and Accept-Language.

    Stored hashed either way, so a reservation row never holds an IP address in clear.
    """
    device_id = (event.headers.get("x-device-id") or "").strip()[:MAX_DEVICE_ID_LENGTH]
    if device_id:
        basis = f"device:{device_id}"
    else:
        basis = "client:" + "|".join((
            event.request_context.http.source_ip or "",
            event.headers.get("user-agent") or "",
            event.headers.get("accept-language") or "",
        ))
    return hashlib.sha256(basis.encode()).hexdigest()
