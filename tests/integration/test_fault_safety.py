"""Faults never cost a buyer money or seats: each test injects a fault into real PostgreSQL or
DynamoDB (moto) under the handlers and checks the contract (503 with Retry-After or success,
never a 500) and, afterwards, that counters, holds and payments agree.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import psycopg
import pytest

from localstage.lambda_runtime import scheduled_event
from tests.integration.test_concurrency import assert_counters_agree_with_rows
from tests.support.api import Api, ApiResponse
from tickets.store import idempotency_records


def assert_unavailable(response: ApiResponse) -> None:
    assert (response.status, response.error_code) == (503, "unavailable"), response.text
    assert response.headers.get("retry-after")


def forget_idempotency_records(endpoint: str) -> None:
    """As if every record's write had failed after the work was done."""
    table = boto3.resource("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="local", aws_secret_access_key="local").Table(
        idempotency_records.persistence_store().table_name)
    for item in table.scan()["Items"]:
        table.delete_item(Key={"id": item["id"]})


@contextmanager
def locked(database_url: str, statement: str) -> Iterator[None]:
    """Holds a lock taken by `statement` in another session until the block ends."""
    with psycopg.connect(database_url) as holder:
        holder.execute(statement)
        yield
        holder.rollback()


def settle(api: Api) -> dict[str, Any]:
    result: dict[str, Any] = api.invoke_raw(scheduled_event(), "ExpireFunction")
    return result


def payments(db: Any) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in db.execute(
        "SELECT reservation_id::text, status FROM payments ORDER BY created_at").fetchall()]


# ----- reserve: a retry after a fault holds its seats once -----

def test_reserve_retried_after_its_record_was_lost_finds_its_own_hold(api: Api, key: str, db: Any,
                                                                      dynamodb_endpoint: str) -> None:
    event = api.create_event()
    first = api.reserve(event["event_id"], 2, key=key, device="buyer-a")
    forget_idempotency_records(dynamodb_endpoint)
    retry = api.reserve(event["event_id"], 2, key=key, device="buyer-a")
    assert (first.status, retry.status) == (201, 201)
    assert retry.body["reservation_id"] == first.body["reservation_id"]
    assert retry.body["reservation_secret"] == first.body["reservation_secret"]
    assert db.execute("SELECT count(*), sum(quantity) FROM reservations").fetchone() == (1, 2)
    forget_idempotency_records(dynamodb_endpoint)
    changed = api.reserve(event["event_id"], 3, key=key, device="buyer-a")
    assert (changed.status, changed.error_code) == (422, "idempotency_key_reused")
    # The same key from another buyer is another request.
    other = api.reserve(event["event_id"], 2, key=key, device="buyer-b")
    assert other.status == 201 and other.body["reservation_id"] != first.body["reservation_id"]
    assert_counters_agree_with_rows(db)


# ----- confirm: interrupted after the charge, retried until it ends -----

def test_confirm_interrupted_after_the_charge_resumes_under_its_key(api: Api, key: str, db: Any,
                                                                    database_url: str) -> None:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 2, key=key).body
    # Recording the payment waits on this lock past the functions' lock_timeout: the card is charged first.
    with locked(database_url, "LOCK TABLE payments IN SHARE MODE"):
        assert_unavailable(api.confirm(hold["reservation_id"], key=key + "c"))
        assert_unavailable(api.confirm(hold["reservation_id"], key=key + "c"))  # not request_in_progress
        assert db.execute("SELECT status FROM payment_intents").fetchall() == [("pending",)]
    confirmed = api.confirm(hold["reservation_id"], key=key + "c")
    assert confirmed.status == 200, confirmed.text
    assert len(confirmed.body["tickets"]) == 2 and confirmed.body["payment"]["status"] == "captured"
    assert payments(db) == [(hold["reservation_id"], "captured")]
    # Another key on the confirmed reservation charges nothing.
    again = api.confirm(hold["reservation_id"], key=key + "other")
    assert (again.status, again.error_code) == (409, "reservation_confirmed")
    assert db.execute("SELECT status FROM payment_intents").fetchall() == [("captured",)]


def test_confirm_nobody_retried_is_settled_by_reconciliation(api: Api, key: str, db: Any, database_url: str) -> None:
    event = api.create_event(tiers=[{"name": "GA", "capacity": 10, "price": 700}])
    sold_later = api.reserve(event["event_id"], 1, key=key + "a").body
    lapsed_meanwhile = api.reserve(event["event_id"], 3, key=key + "b").body
    with locked(database_url, "LOCK TABLE payments IN SHARE MODE"):
        assert_unavailable(api.confirm(sold_later["reservation_id"], key=key + "ac"))
        assert_unavailable(api.confirm(lapsed_meanwhile["reservation_id"], key=key + "bc"))
    assert settle(api)["settled"] == {"sold": 0, "refunded": 0, "uncharged": 0}  # their leases still run
    db.execute("UPDATE payment_intents SET settle_after = now() - interval '1 second'")
    db.execute("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE reservation_id = %s",
               (lapsed_meanwhile["reservation_id"],))
    assert settle(api)["settled"] == {"sold": 1, "refunded": 1, "uncharged": 0}
    sold = api.request("GET", f"/reservations/{sold_later['reservation_id']}").body
    assert sold["status"] == "confirmed" and len(sold["tickets"]) == 1 and sold["payment"]["amount"] == 700
    refunded = api.request("GET", f"/reservations/{lapsed_meanwhile['reservation_id']}").body
    assert (refunded["status"], refunded["payment_status"], refunded["tickets"]) == ("expired", "refunded", [])
    assert sorted(payments(db)) == sorted([(sold_later["reservation_id"], "captured"),
                                           (lapsed_meanwhile["reservation_id"], "refunded")])
    # The buyer's retry, when it finally comes, answers as the purchase ended.
    assert api.confirm(sold_later["reservation_id"], key=key + "ac").status == 200
    assert api.confirm(lapsed_meanwhile["reservation_id"], key=key + "bc").status == 410
    assert settle(api)["settled"] == {"sold": 0, "refunded": 0, "uncharged": 0}
    assert_counters_agree_with_rows(db)


def test_a_confirm_that_died_before_charging_is_settled_as_uncharged(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 1, key=key).body
    declined = api.confirm(hold["reservation_id"], key=key + "c", token="tok_error")
    assert (declined.status, declined.error_code) == (502, "payment_error")
    assert db.execute("SELECT status FROM payment_intents").fetchall() == [("failed",)]
    # A pending intent the provider never charged: released once its lease is over.
    db.execute("UPDATE payment_intents SET status = 'pending', settle_after = now() - interval '1 second'")
    assert settle(api)["settled"] == {"sold": 0, "refunded": 0, "uncharged": 1}
    assert api.confirm(hold["reservation_id"], key=key + "c2").status == 200
    assert payments(db) == [(hold["reservation_id"], "captured")]


def test_provider_that_times_out_after_charging(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 1, key=key).body
    confirmed = api.confirm(hold["reservation_id"], key=key + "c", token="tok_timeout")
    assert confirmed.status == 200, confirmed.text
    assert payments(db) == [(hold["reservation_id"], "captured")]


# ----- connections and time budgets -----

def test_dropped_connections_are_reopened_not_answered_503(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    killed = db.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                        " AND datname = current_database() AND backend_type = 'client backend'").fetchone()[0]
    assert killed >= 1
    assert api.reserve(event["event_id"], 1, key=key).status == 201


def test_a_locked_counter_answers_503_and_changes_nothing(api: Api, key: str, db: Any, database_url: str) -> None:
    event = api.create_event()
    tier_id = event["tiers"][0]["tier_id"]
    with locked(database_url, f"SELECT * FROM counter_shares WHERE counter_id = '{tier_id}' FOR UPDATE"):
        assert_unavailable(api.reserve(event["event_id"], 1, key=key))
        assert api.request("GET", f"/events/{event['event_id']}/availability").status == 200  # reads do not wait
    assert db.execute("SELECT count(*) FROM reservations").fetchone()[0] == 0
    assert api.reserve(event["event_id"], 1, key=key).status == 201  # the 503 was not kept
    assert_counters_agree_with_rows(db)


def test_a_store_call_ends_with_the_invocations_time_budget(api: Api, key: str, db: Any, database_url: str) -> None:
    """A function with 3 s left answers 503 before its timeout, though this read has no lock_timeout."""
    event = api.create_event()
    with locked(database_url, "LOCK TABLE events IN ACCESS EXCLUSIVE MODE"):
        api.shorten_timeouts(3.0)
        started = time.monotonic()
        response = api.request("GET", f"/events/{event['event_id']}")
        elapsed = time.monotonic() - started
    assert_unavailable(response)
    assert elapsed < 3.0, f"answered after {elapsed:.1f}s, past the function's 3 s"


def _silent_server() -> tuple[socket.socket, str]:
    """A DynamoDB endpoint that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.extend(iter(lambda: server.accept()[0], None)), daemon=True).start()
    return server, f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("fault", ["unreachable", "silent"])
def test_dynamodb_down_or_slow_answers_503_in_time(api: Api, key: str, db: Any, fault: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    event = api.create_event()
    if fault == "silent":
        server, endpoint = _silent_server()
    else:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
        probe.close()  # nothing listens there now
    broken = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local",
                          aws_secret_access_key="local", config=idempotency_records.dynamodb_client_config())
    monkeypatch.setattr(idempotency_records.persistence_store(), "client", broken)
    started = time.monotonic()
    response = api.reserve(event["event_id"], 1, key=key)
    elapsed = time.monotonic() - started
    assert_unavailable(response)
    assert elapsed < 10, f"{elapsed:.1f}s: past the function's timeout"
    assert db.execute("SELECT count(*) FROM reservations").fetchone()[0] == 0
    if fault == "silent":
        server.close()


# ----- the per-address limit -----

def test_max_holds_per_ip_ignores_rotating_device_ids(api: Api, key: str, db: Any) -> None:
    event = api.create_event(max_holds_per_ip=2, tiers=[{"name": "GA", "capacity": 200, "price": 1}])
    assert event["max_holds_per_ip"] == 2
    answers = [api.reserve(event["event_id"], 1, key=f"{key}-{n}", device=f"device-{n}") for n in range(4)]
    assert [a.status for a in answers] == [201, 201, 422, 422]
    assert answers[2].body["error"]["limit"] == "max_holds_per_ip"
    assert answers[2].body["error"]["max_holds_per_ip"] == 2
    elsewhere = api.request("POST", f"/events/{event['event_id']}/reservations", body={"quantity": 1},
                            headers={"Idempotency-Key": key + "x"}, source_ip="203.0.113.9")
    assert elsewhere.status == 201
    # A cancelled hold no longer counts.
    api.request("DELETE", f"/reservations/{answers[0].body['reservation_id']}")
    assert api.reserve(event["event_id"], 1, key=key + "y", device="device-9").status == 201
    assert_counters_agree_with_rows(db)


# ----- bad input that used to fail with 500 -----

@pytest.mark.parametrize("body", [
    "[" * 1000 + "]" * 1000,
    '{"name": ' + "{" * 5000 + "}" * 5000 + "}",
    '{"name": "G", "starts_at": "2030-01-01T00:00:00Z", "tiers": [{"name": "A", "capacity": 1' + "0" * 5000 + "}]}",
    '{"name": "G", "starts_at": "0001-01-01T00:30:00+01:00", "tiers": [{"name": "A", "capacity": 1, "price": 1}]}',
    '{"name": "G", "starts_at": "9999-12-31T23:30:00-01:00", "tiers": [{"name": "A", "capacity": 1, "price": 1}]}',
    '{"name": "G", "starts_at": "2030-01-01T00:00:00Z", "tiers": [{"name": "A", "capacity": NaN, "price": 1}]}',
    '{"name": "G", "starts_at": "2030-01-01T00:00:00Z", "tiers": [{"name": "A", "capacity": 1e999, "price": 1}]}',
    '{"name": "G\\ud800", "starts_at": "2030-01-01T00:00:00Z", "tiers": [{"name": "A", "capacity": 1, "price": 1}]}',
])
def test_bad_event_bodies_are_4xx_and_save_nothing(api: Api, db: Any, body: str) -> None:
    response = api.request("POST", "/events", body=body, admin=True)
    assert 400 <= response.status < 500, response.text
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 0
