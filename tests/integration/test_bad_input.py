"""Bad input on every route gets its 4xx in the contract's shape and changes nothing."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from localstage.lambda_runtime import http_event
from tests.support.api import Api

COUNTED = "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM reservations), (SELECT count(*) FROM payments)"


@pytest.fixture
def world(api: Api, key: str) -> dict[str, str]:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 1, key=key).body
    return {"event": event["event_id"], "reservation": hold["reservation_id"]}


def body_routes(world: dict[str, str]) -> list[tuple[str, str]]:
    return [("POST", "/events"), ("POST", f"/events/{world['event']}/reservations"),
            ("POST", f"/reservations/{world['reservation']}/confirm")]


@pytest.mark.parametrize("raw", ['{"quantity": ', "not json", "{'quantity': 1}", "\ufeff{}x"])
def test_malformed_json_is_400(api: Api, world: dict[str, str], db: Any, raw: str) -> None:
    before = db.execute(COUNTED).fetchone()
    for method, path in body_routes(world):
        response = api.request(method, path, body=raw, admin=True, headers={"Idempotency-Key": "bad-json"})
        assert response.status == 400 and response.error_code == "malformed_json", (path, response.text)
        assert response.body["error"]["message"]
    assert db.execute(COUNTED).fetchone() == before


def test_oversized_body_is_413(api: Api, world: dict[str, str], db: Any) -> None:
    before = db.execute(COUNTED).fetchone()
    huge = '{"quantity": 1, "pad": "' + "x" * (64 * 1024) + '"}'
    for method, path in body_routes(world):
        response = api.request(method, path, body=huge, admin=True, headers={"Idempotency-Key": "huge"})
        assert response.status == 413 and response.error_code == "payload_too_large"
    assert db.execute(COUNTED).fetchone() == before


def test_non_utf8_base64_body_is_400(api: Api, world: dict[str, str]) -> None:
    event = http_event("POST", f"/events/{world['event']}/reservations",
                       route_key="POST /events/{event_id}/reservations", path_parameters={"event_id": world["event"]},
                       headers={"Idempotency-Key": "bin"}, body=b"\xff\xfe\x00")
    assert event["isBase64Encoded"] and base64.b64decode(event["body"]) == b"\xff\xfe\x00"
    response = api.invoke(event, "ReserveFunction")
    assert response.status == 400 and response.error_code == "malformed_json"


@pytest.mark.parametrize("body", [
    {"quantity": 0}, {"quantity": -1}, {"quantity": 101}, {"quantity": 10**30}, {"quantity": "2"},
    {"quantity": 1.5}, {"quantity": True}, {"quantity": None}, {}, [], '"quantity"', '42',
    {"quantity": 1, "tier_id": "not-a-uuid"}, {"quantity": 1, "tier_id": 7},
])
def test_reserve_validation(api: Api, world: dict[str, str], db: Any, body: Any, key: str) -> None:
    before = db.execute(COUNTED).fetchone()
    response = api.request("POST", f"/events/{world['event']}/reservations", body=body,
                           headers={"Idempotency-Key": key})
    assert response.status == 422 and response.error_code == "validation_error", response.text
    assert response.body["error"]["details"]
    assert db.execute(COUNTED).fetchone() == before


@pytest.mark.parametrize("body", [{}, {"payment_token": ""}, {"payment_token": 5}, {"payment_token": "a" * 201},
                                  {"payment_token": "tok\u0000"}])
def test_confirm_validation(api: Api, world: dict[str, str], db: Any, body: Any, key: str) -> None:
    response = api.request("POST", f"/reservations/{world['reservation']}/confirm", body=body,
                           headers={"Idempotency-Key": key})
    assert response.status == 422 and response.error_code == "validation_error", response.text
    assert db.execute("SELECT count(*) FROM payments").fetchone()[0] == 0


@pytest.mark.parametrize("header", [None, "", "x" * 129, "caf\u00e9", "tab\there"])
def test_idempotency_key_is_required_and_printable(api: Api, world: dict[str, str], db: Any,
                                                   header: str | None) -> None:
    headers = {} if header is None else {"Idempotency-Key": header}
    before = db.execute(COUNTED).fetchone()
    for path, body in ((f"/events/{world['event']}/reservations", {"quantity": 1}),
                       (f"/reservations/{world['reservation']}/confirm", {"payment_token": "tok_visa"})):
        response = api.request("POST", path, body=body, headers=headers)
        assert response.status == 400, response.text
        expected = "idempotency_key_required" if not header else "invalid_idempotency_key"
        assert response.error_code == expected
    assert db.execute(COUNTED).fetchone() == before


def test_a_bad_body_is_answered_before_a_missing_idempotency_key(api: Api, world: dict[str, str], db: Any) -> None:
    before = db.execute(COUNTED).fetchone()
    response = api.request("POST", f"/events/{world['event']}/reservations", body={"quantity": "two"})
    assert response.status == 422 and response.error_code == "validation_error", response.text
    assert [detail["field"] for detail in response.body["error"]["details"]] == ["quantity"]
    assert db.execute(COUNTED).fetchone() == before


def test_form_encoded_json_is_still_read_as_json(api: Api, world: dict[str, str], key: str) -> None:
    response = api.request("POST", f"/events/{world['event']}/reservations", body='{"quantity": 1}',
                           headers={"Idempotency-Key": key, "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 201, response.text
