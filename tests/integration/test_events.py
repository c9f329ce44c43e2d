"""Events and availability through the handlers."""

from __future__ import annotations

import uuid

import pytest

from tests.support.api import Api


def test_create_event_returns_it_as_get_does(api: Api) -> None:
    created = api.create_event(max_per_customer=8)
    assert uuid.UUID(created["event_id"])
    assert created["currency"] == "EUR" and created["hold_seconds"] == 600 and created["max_per_customer"] == 8
    tier = created["tiers"][0]
    assert uuid.UUID(tier["tier_id"]) and tier["capacity"] == 10 and tier["available_seats"] == 10
    fetched = api.request("GET", f"/events/{created['event_id']}")
    assert fetched.status == 200
    assert fetched.body == created


def test_create_event_applies_defaults(api: Api) -> None:
    response = api.request("POST", "/events", admin=True, body={
        "name": "Minimal", "starts_at": "2030-01-01T00:00:00Z", "tiers": [{"name": "GA", "capacity": 5, "price": 100}]})
    assert response.status == 201, response.text
    body = response.body
    assert body["currency"] == "EUR" and body["hold_seconds"] == 600 and body["max_per_customer"] is None
    assert body["venue"] is None and body["tiers"][0]["max_per_order"] == 10


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}])
def test_create_event_needs_the_organizer_token(api: Api, headers: dict[str, str], db) -> None:  # type: ignore[no-untyped-def]
    response = api.request("POST", "/events", headers=headers, body={
        "name": "X", "starts_at": "2030-01-01T00:00:00Z", "tiers": [{"name": "GA", "capacity": 5, "price": 100}]})
    assert response.status == 401 and response.error_code == "unauthorized"
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    invalid_body = api.request("POST", "/events", headers=headers, body={"name": 1})
    assert invalid_body.status == 401 and invalid_body.error_code == "unauthorized"


@pytest.mark.parametrize(("change", "field"), [
    ({"name": ""}, "name"),
    ({"name": 42}, "name"),
    ({"starts_at": "tomorrow"}, "starts_at"),
    ({"starts_at": "2030-01-01T00:00:00"}, "starts_at"),
    ({"currency": "euro"}, "currency"),
    ({"hold_seconds": 29}, "hold_seconds"),
    ({"hold_seconds": 3601}, "hold_seconds"),
    ({"max_per_customer": 0}, "max_per_customer"),
    ({"tiers": []}, "tiers"),
    ({"tiers": [{"name": "GA", "capacity": 5, "price": 1}] * 21}, "tiers"),
    ({"tiers": [{"name": "GA", "capacity": 0, "price": 1}]}, "tiers.0.capacity"),
    ({"tiers": [{"name": "GA", "capacity": 1_000_001, "price": 1}]}, "tiers.0.capacity"),
    ({"tiers": [{"name": "GA", "capacity": 5, "price": -1}]}, "tiers.0.price"),
    ({"tiers": [{"name": "GA", "capacity": 5, "price": 1, "max_per_order": 101}]}, "tiers.0.max_per_order"),
    ({"tiers": [{"name": "GA", "capacity": "5", "price": 1}]}, "tiers.0.capacity"),
    ({"name": "nul\u0000byte"}, "name"),
    ({"sales_start_at": "2030-02-01T00:00:00Z", "sales_end_at": "2030-01-01T00:00:00Z"}, "body"),
])
def test_create_event_validation(api: Api, change: dict[str, object], field: str, db) -> None:  # type: ignore[no-untyped-def]
    payload = {"name": "Gala", "starts_at": "2030-01-01T00:00:00Z",
               "tiers": [{"name": "GA", "capacity": 5, "price": 100}], **change}
    response = api.request("POST", "/events", admin=True, body=payload)
    assert response.status == 422, response.text
    assert response.error_code == "validation_error"
    assert field in {detail["field"] for detail in response.body["error"]["details"]}
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_injection_strings_are_stored_as_text(api: Api) -> None:
    hostile = "'); DROP TABLE events; --"
    created = api.create_event(name=hostile, venue="<script>alert(1)</script>")
    assert api.request("GET", f"/events/{created['event_id']}").body["name"] == hostile


@pytest.mark.parametrize("event_id", [str(uuid.uuid4()), "not-a-uuid", "1' OR '1'='1"])
def test_unknown_event_is_404(api: Api, event_id: str) -> None:
    for path in (f"/events/{event_id}", f"/events/{event_id}/availability"):
        response = api.request("GET", path)
        assert response.status == 404 and response.error_code == "event_not_found"


def test_availability_counts_live_holds_and_sales(api: Api, key: str) -> None:
    event = api.create_event(tiers=[{"name": "A", "capacity": 10, "price": 100},
                                    {"name": "B", "capacity": 5, "price": 900}])
    tier_a, tier_b = (tier["tier_id"] for tier in event["tiers"])
    held = api.reserve(event["event_id"], 3, key=key, tier_id=tier_a)
    assert held.status == 201
    sold = api.reserve(event["event_id"], 2, key=key + "b", tier_id=tier_b)
    assert api.confirm(sold.body["reservation_id"], key=key + "c").status == 200
    availability = api.availability(event["event_id"])
    assert availability["available"] is True and availability["available_seats"] == 10
    assert [(t["tier_id"], t["available_seats"], t["price"], t["currency"]) for t in availability["tiers"]] == [
        (tier_a, 7, 100, "EUR"), (tier_b, 3, 900, "EUR")]
