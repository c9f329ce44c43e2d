"""Pure logic: models, fingerprinting, the request guard and the test payment provider."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from pydantic import ValidationError

from localstage.lambda_runtime import http_event
from tickets.edge.buyers import buyer
from tickets.edge.http import MAX_BODY_BYTES, _guard_request
from tickets.models.events import EventCreate
from tickets.models.reservations import Reservation, ReserveRequest
from tickets.payments import PaymentDeclined, PaymentProviderFailure, TestPaymentProvider, intent_key


def test_times_are_rfc3339_utc() -> None:
    paris = timezone(timedelta(hours=1))
    reservation = Reservation.model_validate({
        "reservation_id": "3b2f6a9e-0b7e-4b2a-9a51-5c1d7e9f0a11", "booking_reference": "EVT-ABC123",
        "event_id": "3b2f6a9e-0b7e-4b2a-9a51-5c1d7e9f0a12", "tier_id": "3b2f6a9e-0b7e-4b2a-9a51-5c1d7e9f0a13",
        "quantity": 1, "status": "held", "expires_at": datetime(2030, 1, 1, 13, 0, tzinfo=paris),
        "total_amount": 100, "currency": "EUR", "payment_status": "pending",
        "created_at": datetime(2030, 1, 1, 12, 0, tzinfo=UTC)})
    dumped = reservation.model_dump(mode="json")
    assert dumped["expires_at"] == "2030-01-01T12:00:00Z" and dumped["created_at"] == "2030-01-01T12:00:00Z"


@pytest.mark.parametrize("quantity", [0, 101, "1", 1.0, True, None])
def test_reserve_quantity_is_a_strict_integer_in_range(quantity: object) -> None:
    with pytest.raises(ValidationError):
        ReserveRequest.model_validate({"quantity": quantity})


def test_event_defaults_and_sales_window_order() -> None:
    event = EventCreate.model_validate({"name": "G", "starts_at": "2030-01-01T00:00:00Z",
                                        "tiers": [{"name": "GA", "capacity": 1, "price": 0}]})
    assert (event.currency, event.hold_seconds, event.max_per_customer, event.tiers[0].max_per_order) == (
        "EUR", 600, None, 10)
    with pytest.raises(ValidationError):
        EventCreate.model_validate({"name": "G", "starts_at": "2030-01-01T00:00:00Z",
                                    "sales_start_at": "2030-01-02T00:00:00Z", "sales_end_at": "2030-01-01T00:00:00Z",
                                    "tiers": [{"name": "GA", "capacity": 1, "price": 0}]})


def fingerprint(headers: dict[str, str], ip: str = "192.0.2.1") -> str:
    event = APIGatewayProxyEventV2(http_event("GET", "/", headers=headers, source_ip=ip))
    return buyer(event, headers.get("X-Device-Id")).fingerprint


def address(headers: dict[str, str], ip: str = "192.0.2.1") -> str:
    event = APIGatewayProxyEventV2(http_event("GET", "/", headers=headers, source_ip=ip))
    return buyer(event, headers.get("X-Device-Id")).address


def test_address_ignores_the_device_id() -> None:
    assert address({"X-Device-Id": "d1"}) == address({"X-Device-Id": "d2"}) == address({})
    assert address({}) != address({}, "192.0.2.2") and "192.0.2.1" not in address({})


def test_fingerprint_prefers_the_device_id() -> None:
    assert fingerprint({"X-Device-Id": "d1"}, "192.0.2.1") == fingerprint({"X-Device-Id": "d1"}, "192.0.2.2")
    assert fingerprint({"X-Device-Id": "d1"}) != fingerprint({"X-Device-Id": "d2"})


def test_fingerprint_without_device_hashes_ip_agent_and_language() -> None:
    base = {"User-Agent": "UA", "Accept-Language": "en"}
    assert fingerprint(base) == fingerprint(dict(base))
    assert fingerprint(base) != fingerprint(base, "192.0.2.9")
    assert fingerprint(base) != fingerprint({**base, "Accept-Language": "de"})
    assert "192.0.2.1" not in fingerprint(base) and len(fingerprint(base)) == 64


def test_guard_rejects_oversized_bodies_and_normalises_content_type() -> None:
    too_big = http_event("POST", "/events", body="x" * (MAX_BODY_BYTES + 1))
    rejection = _guard_request(too_big)
    assert rejection is not None and rejection.kind.status == 413 and rejection.code == "payload_too_large"
    form = http_event("POST", "/events", body='{"a": 1}', headers={"Content-Type": "text/plain"})
    assert _guard_request(form) is None and form["headers"]["content-type"] == "application/json"
    binary = http_event("POST", "/events", body=b"\xff\xfe")
    rejection = _guard_request(binary)
    assert rejection is not None and rejection.code == "malformed_json"


def test_guard_refuses_deep_nesting_but_not_brackets_in_strings() -> None:
    deep = http_event("POST", "/events", body="[" * 1000 + "]" * 1000)
    rejection = _guard_request(deep)
    assert rejection is not None and rejection.code == "validation_error"
    assert _guard_request(http_event("POST", "/events", body='{"name": "' + "[{" * 500 + '"}')) is None
    assert _guard_request(http_event("POST", "/events", body='{"a": ' * 32 + "1" + "}" * 32)) is None


def test_test_provider_tokens_and_idempotent_charges() -> None:
    provider = TestPaymentProvider()
    with pytest.raises(PaymentDeclined):
        provider.charge(amount=1, currency="EUR", token="tok_decline", idempotency_key="k")
    with pytest.raises(PaymentProviderFailure):
        provider.charge(amount=1, currency="EUR", token="tok_error", idempotency_key="k")
    first = provider.charge(amount=5, currency="EUR", token="tok_visa", idempotency_key="k1")
    assert provider.charge(amount=5, currency="EUR", token="tok_visa", idempotency_key="k1") == first
    assert provider.charge(amount=5, currency="EUR", token="tok_visa", idempotency_key="k2") != first


def test_test_provider_tells_what_a_key_charged() -> None:
    provider = TestPaymentProvider()
    rid = uuid.uuid4()
    charged = provider.charge(amount=5, currency="EUR", token="tok_visa", idempotency_key=intent_key(rid, "tok_visa"))
    assert provider.find_charge(idempotency_key=intent_key(rid, "tok_visa")) == charged.transaction_id
    with pytest.raises(PaymentProviderFailure):  # charged, but the answer is lost
        provider.charge(amount=5, currency="EUR", token="tok_timeout", idempotency_key=intent_key(rid, "tok_timeout"))
    assert provider.find_charge(idempotency_key=intent_key(rid, "tok_timeout")) is not None
    assert provider.find_charge(idempotency_key=intent_key(rid, "tok_error")) is None
    assert provider.find_charge(idempotency_key=intent_key(rid, "tok_decline")) is None
