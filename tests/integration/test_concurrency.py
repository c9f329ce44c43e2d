"""Races: many buyers on one tier, confirm against expiry, two scanners, concurrent retries.

Every racing request goes through the real handlers, Idempotency-Key included, each in a Lambda
execution environment of its own (`environments`: the local stage's worker pools; see
tests/support/api.py for why threads of one process cannot stand in for environments), so the
invocations really overlap in DynamoDB and in PostgreSQL.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
import pytest

from localstage.lambda_runtime import scheduled_event
from tests.integration.test_query_plans import insert_holds
from tests.support.api import Api, ApiResponse

T = TypeVar("T")


def race(count: int, work: Callable[[int], T]) -> list[T]:
    """Runs work(0..count-1) on `count` threads released at the same instant."""
    barrier = threading.Barrier(count)

    def run(index: int) -> T:
        barrier.wait()
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def assert_counters_agree_with_rows(db: Any) -> None:
    """Every counter (a tier's, a quota's, an offer's): capacity - free over its shares = seats (claims)
    of the confirmed and held (live or lapsed) reservations it counts, within capacity."""
    rows = db.execute("""
        SELECT c.counter_id, c.capacity, c.capacity - (SELECT sum(free) FROM counter_shares s
                                                       WHERE s.counter_id = c.counter_id),
               coalesce((SELECT sum(quantity) FROM reservations r
                         WHERE r.tier_id IN (SELECT counter_tiers(c.counter_id))
                           AND r.status IN ('held', 'confirmed')), 0)
               + (SELECT count(*) FROM reservations r  -- an offer's claims
                  WHERE r.offer_id = c.counter_id AND r.status IN ('held', 'confirmed'))
        FROM counters c""").fetchall()
    for counter_id, capacity, taken, counted in rows:
        assert taken == counted, f"counter {counter_id}: {taken} seats taken but rows hold {counted}"
        assert 0 <= taken <= capacity


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fifty_buyers_with_mixed_quantities_never_oversell(api: Api, environments: Api, key: str,
                                                           db: Any, seed: int) -> None:
    event = api.create_event(tiers=[{"name": "Hot", "capacity": 10, "price": 100, "max_per_order": 4}])
    quantities = [random.Random(seed * 100 + n).randint(1, 4) for n in range(50)]
    responses = race(50, lambda n: environments.reserve(event["event_id"], quantities[n], key=f"{key}-{n}",
                                                        device=f"buyer-{n}"))

    assert not [r.text for r in responses if r.status not in (201, 409)]
    held = sum(q for q, r in zip(quantities, responses, strict=True) if r.status == 201)
    assert held <= 10
    free_at_end = 10 - held
    for quantity, response in zip(quantities, responses, strict=True):
        if response.status == 409:
            assert response.error_code in ("sold_out", "insufficient_inventory")
            # Never refused while the seats it asked for were free: seats only ran out during the race.
            assert quantity > free_at_end
            assert response.body["error"]["available_seats"] < quantity
    # Whatever is left is smaller than every refused request; the database agrees with the answers.
    assert api.availability(event["event_id"])["available_seats"] == free_at_end
    assert db.execute("SELECT coalesce(sum(quantity), 0) FROM reservations").fetchone()[0] == held
    assert_counters_agree_with_rows(db)


@pytest.mark.parametrize(("buyers", "capacity"), [(60, 10), (50, 100)])
def test_seats_held_equal_min_of_demand_and_capacity(api: Api, environments: Api, key: str, db: Any,
                                                     buyers: int, capacity: int) -> None:
    event = api.create_event(tiers=[{"name": "Hot", "capacity": capacity, "price": 100}])
    responses = race(buyers, lambda n: environments.reserve(event["event_id"], 1, key=f"{key}-{n}",
                                                            device=f"buyer-{n}"))
    statuses = [r.status for r in responses]
    held_ids = {r.body["reservation_id"] for r in responses if r.status == 201}
    assert len(held_ids) == min(buyers, capacity)
    assert db.execute("SELECT count(*) FROM reservations").fetchone()[0] == len(held_ids)
    others = [r.text for r in responses if r.status == 409 and r.error_code != "sold_out"]
    assert others == []
    assert statuses.count(201) + statuses.count(409) == buyers
    assert_counters_agree_with_rows(db)


def test_buyers_racing_lapsed_holds_reclaim_them(api: Api, environments: Api, key: str,
                                                 db: Any) -> None:
    event = api.create_event(tiers=[{"name": "Hot", "capacity": 10, "price": 100}])
    for n in range(10):
        assert api.reserve(event["event_id"], 1, key=f"{key}-old-{n}").status == 201
    db.execute("UPDATE reservations SET expires_at = now() - interval '1 second'")
    responses = race(30, lambda n: environments.reserve(event["event_id"], 1, key=f"{key}-{n}",
                                                        device=f"buyer-{n}"))
    assert len({r.body["reservation_id"] for r in responses if r.status == 201}) == 10
    assert_counters_agree_with_rows(db)


def test_a_reclaim_meeting_another_under_way_waits_for_it_and_the_buyer_gets_the_seats(
        api: Api, environments: Api, key: str, db: Any, database_url: str) -> None:
    # Two buyers refused by the same lapsed hold both reclaim it. The second's reclaim skipped the row
    # the first's had locked, its reserve asked again before the first's reclaim gave the seats back,
    # and it was refused with available_seats enough for it. (The first's reclaim, stopped after its
    # first statement, is a connection holding the hold's row.)
    event = api.create_event(tiers=[{"name": "Hot", "capacity": 4, "price": 100}])
    assert api.reserve(event["event_id"], 4, key=f"{key}-old").status == 201
    db.execute("UPDATE reservations SET expires_at = now() - interval '1 second'")
    answers: list[ApiResponse] = []
    with psycopg.connect(database_url) as first:
        first.execute("SELECT 1 FROM reservations FOR UPDATE")
        second = threading.Thread(target=lambda: answers.append(
            environments.reserve(event["event_id"], 2, key=f"{key}-second", device="second")))
        second.start()
        waited = False
        for _ in range(100):
            waited = db.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                " AND query LIKE '%%reclaim_lapsed_for_tier%%'").fetchone() == (1,)
            if waited:
                break
            time.sleep(0.05)
        first.commit()
    second.join()
    assert waited, "the second reclaim did not wait for the first"
    assert answers[0].status == 201, answers[0].text
    assert_counters_agree_with_rows(db)


def test_reclaims_of_two_tiers_sharing_an_offer_wait_in_one_order(api: Api, db: Any, database_url: str) -> None:
    # Two buyers, one on each tier, both reclaiming with one offer: read per tier and then per offer,
    # each locked its own tier's lapsed holds, then waited for the other's, which it reads too
    # (made with the offer): a deadlock, broken after a second by an error. Locked by id, they queue.
    event = api.create_event(tiers=[{"name": "A", "capacity": 10_000, "price": 100},
                                    {"name": "B", "capacity": 10_000, "price": 100}])
    offer = api.request("POST", f"/events/{event['event_id']}/offers", admin=True,
                        body={"code": "BOTH", "percent_off": 10, "max_claims": 10_000})
    assert offer.status == 201, offer.text
    tiers = [tier["tier_id"] for tier in event["tiers"]]

    def reclaim(tier_id: str) -> psycopg.Error | None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            try:
                conn.execute("SELECT reclaim_lapsed_for_tier(%s, %s)", (tier_id, offer.body["offer_id"]))
            except psycopg.Error as error:
                return error
        return None

    for attempt in range(3):
        # Lapsed holds of both tiers made with the offer (written straight into the table: what is
        # counted here is errors, not seats).
        for tier_id in tiers:
            insert_holds(db, event["event_id"], tier_id, 300, "-1 minute", offer=(offer.body["offer_id"], "BOTH"))
        errors = [error for error in race(len(tiers), lambda n: reclaim(tiers[n])) if error is not None]
        assert not errors, f"attempt {attempt}: {errors}"
        assert db.execute("SELECT count(*) FROM reservations WHERE status = 'held'").fetchone() == (0,)


def test_confirm_racing_expiry_has_exactly_one_winner(api: Api, environments: Api, key: str,
                                                      db: Any) -> None:
    event = api.create_event(tiers=[{"name": "GA", "capacity": 40, "price": 100}])
    holds = [api.reserve(event["event_id"], 1, key=f"{key}-{n}").body for n in range(20)]
    # Each hold lapses a few milliseconds from now, so confirm and expiry meet at the boundary.
    for n, hold in enumerate(holds):
        db.execute("UPDATE reservations SET expires_at = clock_timestamp() + make_interval(secs => %s)"
                   " WHERE reservation_id = %s", (0.02 + 0.004 * n, hold["reservation_id"]))

    def contender(index: int) -> ApiResponse | Any:
        if index % 2 == 0:
            return environments.confirm(holds[index // 2]["reservation_id"], key=f"{key}-c{index}")
        return environments.invoke_raw(scheduled_event(), "ExpireFunction")

    results = race(40, contender)
    confirms = results[0::2]
    assert all(r.status in (200, 410) for r in confirms), [r.text for r in confirms if r.status not in (200, 410)]
    for hold, response in zip(holds, confirms, strict=True):
        status, = db.execute("SELECT status FROM reservations WHERE reservation_id = %s",
                             (hold["reservation_id"],)).fetchone()
        captured = db.execute("SELECT count(*) FROM payments WHERE reservation_id = %s AND status = 'captured'",
                              (hold["reservation_id"],)).fetchone()[0]
        tickets = db.execute("SELECT count(*) FROM tickets WHERE reservation_id = %s",
                             (hold["reservation_id"],)).fetchone()[0]
        if response.status == 200:
            assert (status, captured, tickets) == ("confirmed", 1, 1)
        else:
            assert response.error_code == "reservation_expired"
            assert status in ("held", "expired") and captured == 0 and tickets == 0
    db.execute("SELECT pg_sleep(0.2)")
    api.invoke_raw(scheduled_event(), "ExpireFunction")
    assert db.execute("SELECT count(*) FROM reservations WHERE status = 'held'").fetchone()[0] == 0
    assert_counters_agree_with_rows(db)


def test_two_scanners_on_one_ticket(api: Api, environments: Api, key: str) -> None:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 1, key=key).body
    code = api.confirm(hold["reservation_id"], key=key + "c").body["tickets"][0]["ticket_code"]
    responses = race(8, lambda n: environments.request("POST", f"/tickets/{code}/check-in", admin=True))
    admitted = [r for r in responses if r.status == 200]
    assert len(admitted) == 1
    refused = [r for r in responses if r.status != 200]
    assert all(r.status == 409 and r.error_code == "already_checked_in" for r in refused)
    assert {r.body["error"]["checked_in_at"] for r in refused} == {admitted[0].body["checked_in_at"]}


def test_concurrent_retries_make_one_reservation(api: Api, environments: Api, key: str,
                                                 db: Any) -> None:
    event = api.create_event()
    responses = race(12, lambda n: environments.reserve(event["event_id"], 2, key=key))
    made = [r for r in responses if r.status == 201]
    assert made and {r.body["reservation_id"] for r in made} == {made[0].body["reservation_id"]}
    busy = [r for r in responses if r.status != 201]
    assert all(r.status == 409 and r.error_code == "request_in_progress" and r.headers.get("retry-after")
               for r in busy)
    assert db.execute("SELECT count(*), sum(quantity) FROM reservations").fetchone() == (1, 2)


def test_concurrent_confirms_under_different_keys_sell_once(api: Api, environments: Api, key: str,
                                                            db: Any) -> None:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 2, key=key).body
    responses = race(6, lambda n: environments.confirm(hold["reservation_id"], key=f"{key}-c{n}",
                                                       token="tok_visa" if n % 2 else "tok_mastercard"))
    assert [r.status for r in responses].count(200) == 1
    assert all(r.status == 409 and r.error_code in ("reservation_confirmed", "request_in_progress")
               for r in responses if r.status != 200)
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 2
    # Only the winner charged: the others were refused before reaching the provider.
    assert db.execute("SELECT status FROM payments").fetchall() == [("captured",)]
