"""Assigned seats: named seats never held or sold twice, best available, and everything else still counting."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from localstage.lambda_runtime import scheduled_event
from tests.integration.test_concurrency import assert_counters_agree_with_rows, race
from tests.support.api import Api, ApiResponse
from tickets.domain.reservations import ReserveAnswer


def seated_event(api: Api, rows: list[tuple[str, int]] | None = None, *, max_per_order: int = 6,
                 **extra: Any) -> dict[str, Any]:
    tier = {"name": "Stalls", "seating": "assigned", "price": 3000, "max_per_order": max_per_order,
            "rows": [{"row": row, "seats": seats} for row, seats in (rows or [("A", 4), ("B", 6)])]}
    return api.create_event(tiers=[tier], **extra)


def reserve(api: Api, event: dict[str, Any], key: str, *, seats: list[str] | None = None,
            quantity: int | None = None, tier: int = 0, device: str | None = None, **extra: Any) -> ApiResponse:
    body: dict[str, Any] = {"tier_id": event["tiers"][tier]["tier_id"], **extra}
    if seats is not None:
        body["seats"] = seats
    if quantity is not None:
        body["quantity"] = quantity
    headers = {"Idempotency-Key": key, **({"X-Device-Id": device} if device else {})}
    return api.request("POST", f"/events/{event['event_id']}/reservations", body=body, headers=headers)


def seat_map(api: Api, event: dict[str, Any], tier: int = 0) -> dict[str, str]:
    response = api.request("GET", f"/events/{event['event_id']}/tiers/{event['tiers'][tier]['tier_id']}/seats")
    assert response.status == 200, response.text
    return {seat["seat"]: seat["status"] for seat in response.body["seats"]}


def lapse(db: Any, reservation_id: str) -> None:
    db.execute("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE reservation_id = %s",
               (reservation_id,))


def assert_no_seat_twice(db: Any) -> None:
    """Every live hold and sale has all its seats, and no seat belongs to two of them."""
    rows = db.execute("""
        SELECT r.reservation_id, r.quantity, cardinality(r.seats),
               (SELECT count(*) FROM seats s WHERE s.reservation_id = r.reservation_id)
        FROM reservations r
        WHERE r.seats IS NOT NULL AND (r.status = 'confirmed' OR (r.status = 'held' AND r.expires_at > now()))
    """).fetchall()
    for reservation_id, quantity, named, owned in rows:
        assert quantity == named == owned, f"{reservation_id}: {quantity} seats, {named} named, {owned} owned"
    twice = db.execute("""
        SELECT label, count(*) FROM reservations r, unnest(r.seats) AS label
        WHERE r.status = 'confirmed' OR (r.status = 'held' AND r.expires_at > now())
        GROUP BY r.tier_id, label HAVING count(*) > 1""").fetchall()
    assert not twice, f"seats held or sold twice: {twice}"


# ----- creating -----

def test_rows_and_labels_make_seats_and_capacity(api: Api) -> None:
    event = seated_event(api)
    tier = event["tiers"][0]
    assert (tier["capacity"], tier["seating"], tier["available_seats"]) == (10, "assigned", 10)
    response = api.request("GET", f"/events/{event['event_id']}/tiers/{tier['tier_id']}/seats")
    assert response.body["tier_id"] == tier["tier_id"]
    assert response.body["seats"][:2] == [{"seat": "A-1", "row": "A", "number": 1, "status": "available"},
                                          {"seat": "A-2", "row": "A", "number": 2, "status": "available"}]
    assert [s["seat"] for s in response.body["seats"]][3:6] == ["A-4", "B-1", "B-2"]
    labelled = api.create_event(tiers=[{"name": "Boxes", "seating": "assigned", "capacity": 3, "price": 1,
                                        "seats": ["Box 3", "Box 1", "Box 2"]},
                                       {"name": "Floor", "capacity": 50, "price": 1}])
    assert [t["seating"] for t in labelled["tiers"]] == ["assigned", "general"]
    boxes = api.request("GET", f"/events/{labelled['event_id']}/tiers/{labelled['tiers'][0]['tier_id']}/seats").body
    assert boxes["seats"][0] == {"seat": "Box 3", "row": None, "number": None, "status": "available"}
    assert [s["seat"] for s in boxes["seats"]] == ["Box 3", "Box 1", "Box 2"]
    general = api.request("GET", f"/events/{labelled['event_id']}/tiers/{labelled['tiers'][1]['tier_id']}/seats")
    assert (general.status, general.error_code) == (422, "not_assigned_seating")


@pytest.mark.parametrize("tier", [
    {"name": "T", "seating": "assigned", "capacity": 5, "price": 1, "rows": [{"row": "A", "seats": 4}]},
    {"name": "T", "seating": "assigned", "price": 1},
    {"name": "T", "seating": "assigned", "price": 1, "rows": [{"row": "A", "seats": 2}], "seats": ["X"]},
    {"name": "T", "seating": "assigned", "price": 1, "seats": ["A", "B", "A"]},
    {"name": "T", "seating": "assigned", "price": 1, "rows": [{"row": "A", "seats": 2}, {"row": "A", "seats": 3}]},
    {"name": "T", "capacity": 4, "price": 1, "rows": [{"row": "A", "seats": 4}]},
    {"name": "T", "price": 1},
    {"name": "T", "seating": "reserved", "capacity": 4, "price": 1},
    {"name": "T", "seating": "assigned", "price": 1, "rows": [{"row": "A", "seats": 0}]},
    {"name": "T", "seating": "assigned", "price": 1, "rows": [{"row": f"R{n}", "seats": 1000} for n in range(51)]},
])
def test_bad_seated_tiers_are_422_and_save_nothing(api: Api, db: Any, tier: dict[str, Any]) -> None:
    response = api.request("POST", "/events", admin=True, body={
        "name": "x", "starts_at": "2030-04-01T19:00:00Z", "tiers": [tier]})
    assert (response.status, response.error_code) == (422, "validation_error"), response.text
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM seats").fetchone()[0] == 0


# ----- reserving -----

def test_named_seats_all_or_nothing(api: Api, key: str, db: Any) -> None:
    event = seated_event(api)
    held = reserve(api, event, key + "a", seats=["A-3", "A-2"])
    assert held.status == 201, held.text
    assert (held.body["quantity"], held.body["seats"], held.body["total_amount"]) == (2, ["A-2", "A-3"], 6000)
    again = reserve(api, event, key + "b", seats=["A-1", "A-2"], quantity=2)
    assert (again.status, again.error_code, again.body["error"]["unavailable_seats"]) == (
        409, "seats_unavailable", ["A-2"])
    assert "A-2" in again.body["error"]["message"]
    assert seat_map(api, event)["A-1"] == "available"  # nothing held by the refused request
    assert api.availability(event["event_id"])["available_seats"] == 8
    read = api.request("GET", f"/reservations/{held.body['reservation_id']}")
    assert read.body["seats"] == ["A-2", "A-3"]
    assert_counters_agree_with_rows(db)
    assert_no_seat_twice(db)


@pytest.mark.parametrize(("body", "field"), [
    ({"seats": ["A-1", "Z-9"]}, "seats"),
    ({"seats": ["A-1", "A-1"]}, "seats"),
    ({"seats": ["A-1", "A-2"], "quantity": 3}, "quantity"),
    ({"seats": []}, "seats"),
    ({}, "quantity"),
])
def test_bad_seat_requests_are_422_before_inventory(api: Api, key: str, db: Any, body: dict[str, Any],
                                                     field: str) -> None:
    event = seated_event(api, rows=[("A", 2)])
    assert reserve(api, event, key + "full", quantity=2).status == 201  # sold out: validation still comes first
    response = api.request("POST", f"/events/{event['event_id']}/reservations", headers={"Idempotency-Key": key},
                           body={"tier_id": event["tiers"][0]["tier_id"], **body})
    assert (response.status, response.error_code) == (422, "validation_error"), response.text
    assert db.execute("SELECT count(*) FROM reservations").fetchone()[0] == 1


def test_seats_on_a_general_tier_are_422(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    response = reserve(api, event, key, seats=["A-1"])
    assert (response.status, response.error_code) == (422, "validation_error")
    assert response.body["error"]["details"][0]["field"] == "seats"
    assert db.execute("SELECT count(*) FROM reservations").fetchone()[0] == 0
    assert "seats" not in api.reserve(event["event_id"], 1, key=key + "ga").body  # general admission as before


def test_named_seats_above_max_per_order(api: Api, key: str) -> None:
    event = seated_event(api, max_per_order=2)
    response = reserve(api, event, key, seats=["B-1", "B-2", "B-3"])
    assert (response.status, response.error_code, response.body["error"]["limit"]) == (
        422, "limit_exceeded", "max_per_order")


def test_best_available_adjacent_front_first(api: Api, key: str, db: Any) -> None:
    event = seated_event(api, rows=[("A", 5), ("B", 5), ("C", 5)])
    got = [reserve(api, event, f"{key}{n}", quantity=q).body["seats"] for n, q in enumerate([2, 2, 3, 1, 4])]
    # A-1 A-2 | A-3 A-4 | 3 do not fit in A's one left: B-1..B-3 | 1: A-5 | 4: C-1..C-4 (B has 2 left)
    assert got == [["A-1", "A-2"], ["A-3", "A-4"], ["B-1", "B-2", "B-3"], ["A-5"], ["C-1", "C-2", "C-3", "C-4"]]
    # No block of 3 anywhere (B-4 B-5, C-5 left): the front-most free seats.
    assert reserve(api, event, key + "x", quantity=3).body["seats"] == ["B-4", "B-5", "C-5"]
    sold_out = reserve(api, event, key + "y", quantity=1)
    assert (sold_out.status, sold_out.error_code) == (409, "sold_out")
    assert_counters_agree_with_rows(db)
    assert_no_seat_twice(db)


def test_best_available_skips_taken_seats_within_a_row(api: Api, key: str) -> None:
    event = seated_event(api, rows=[("A", 6), ("B", 6)])
    assert reserve(api, event, key + "a", seats=["A-3"]).status == 201
    assert reserve(api, event, key + "b", quantity=2).body["seats"] == ["A-1", "A-2"]
    assert reserve(api, event, key + "c", quantity=3).body["seats"] == ["A-4", "A-5", "A-6"]
    assert reserve(api, event, key + "d", quantity=1).body["seats"] == ["B-1"]


def test_best_available_steps_past_seats_being_claimed(api: Api, key: str, database_url: str, db: Any) -> None:
    """A crowd at the front: other buyers' claims in flight (their transactions still open) on every
    other seat of the first five rows neither make a best-available reserve wait for them nor split
    its block: it gets two adjacent seats in one row where nobody is claiming."""
    event = seated_event(api, rows=[(f"R{n}", 10) for n in range(1, 21)])
    tier_id = event["tiers"][0]["tier_id"]
    with psycopg.connect(database_url) as crowd:
        crowd.execute("SELECT seat_no FROM seats WHERE tier_id = %s AND seat_no <= 50 AND seat_no %% 2 = 1"
                      " ORDER BY seat_no FOR UPDATE", (tier_id,))
        got = reserve(api, event, key, quantity=2)
        assert got.status == 201, got.text
        (row_a, number_a), (row_b, number_b) = (seat.split("-") for seat in got.body["seats"])
        assert row_a == row_b and int(number_b) == int(number_a) + 1
        assert int(row_a[1:]) > 5
    assert_counters_agree_with_rows(db)
    assert_no_seat_twice(db)


def front(db: Any, tier_id: str) -> tuple[int, int]:
    row = db.execute("SELECT free_after, version FROM seat_fronts WHERE tier_id = %s", (tier_id,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_the_front_moves_past_sold_seats_and_back_below_freed_ones(api: Api, key: str, db: Any) -> None:
    """Best available reads a tier's free seats from its front, which moves past the seats sold (so
    a read does not walk what a burst left behind) and back below any seat a cancel or an expiry
    frees: a lone buyer still gets the front-most block."""
    event = seated_event(api, rows=[(f"R{n}", 10) for n in range(1, 41)], max_per_order=10)
    tier_id = event["tiers"][0]["tier_id"]
    rows = [reserve(api, event, f"{key}{n}", quantity=10).body for n in range(31)]
    assert [held["seats"][0] for held in rows] == [f"R{n}-1" for n in range(1, 32)]
    assert front(db, tier_id) == (260, 0)  # the 27th read found its first free seat at 261, 256 past the front
    assert api.request("DELETE", f"/reservations/{rows[0]['reservation_id']}").status == 200
    assert front(db, tier_id) == (0, 1)
    assert reserve(api, event, key + "a", quantity=2).body["seats"] == ["R1-1", "R1-2"]
    lapse(db, rows[2]["reservation_id"])
    assert api.invoke_raw(scheduled_event(), "ExpireFunction")["expired"] == 1
    assert front(db, tier_id) == (0, 2)  # least(0, R3-1 - 1)
    # R1 has 8 seats left, R2 is sold: R3, freed by the expiry, is the front-most row of 10.
    assert reserve(api, event, key + "b", quantity=10).body["seats"][0] == "R3-1"
    assert_counters_agree_with_rows(db)
    assert_no_seat_twice(db)


def test_an_advance_read_before_a_release_is_not_applied(api: Api, key: str, db: Any) -> None:
    """A reserve that read the front before a release freed a seat below where it would move the
    front leaves the front alone (the release counted a version)."""
    event = seated_event(api, rows=[(f"R{n}", 10) for n in range(1, 4)], max_per_order=10)
    tier_id = event["tiers"][0]["tier_id"]
    held = reserve(api, event, key, quantity=10).body
    _, read_version = front(db, tier_id)
    assert api.request("DELETE", f"/reservations/{held['reservation_id']}").status == 200
    db.execute("SELECT seats_front_advance(%s, %s, 10)", (tier_id, read_version))
    assert front(db, tier_id) == (0, read_version + 1)
    assert reserve(api, event, key + "a", quantity=2).body["seats"] == ["R1-1", "R1-2"]


def test_labelled_seats_in_order_of_preference(api: Api, key: str) -> None:
    event = api.create_event(tiers=[{"name": "Boxes", "seating": "assigned", "price": 1, "max_per_order": 4,
                                     "seats": ["Royal", "Box 1", "Box 2", "Box 3"]}])
    assert reserve(api, event, key + "a", quantity=1).body["seats"] == ["Royal"]
    assert reserve(api, event, key + "b", quantity=2).body["seats"] == ["Box 1", "Box 2"]
    assert reserve(api, event, key + "c", seats=["Box 3"]).body["seats"] == ["Box 3"]


def test_cancel_expiry_and_lapse_free_seats(api: Api, key: str, db: Any) -> None:
    event = seated_event(api, rows=[("A", 4)])
    first = reserve(api, event, key + "a", seats=["A-1", "A-2"]).body
    second = reserve(api, event, key + "b", seats=["A-3"]).body
    assert seat_map(api, event) == {"A-1": "held", "A-2": "held", "A-3": "held", "A-4": "available"}
    assert api.request("DELETE", f"/reservations/{second['reservation_id']}").status == 200
    assert seat_map(api, event)["A-3"] == "available"
    # A lapsed hold's seats are free at once, before the expiry job has run.
    lapse(db, first["reservation_id"])
    assert seat_map(api, event) == dict.fromkeys(["A-1", "A-2", "A-3", "A-4"], "available")
    assert api.availability(event["event_id"])["available_seats"] == 4
    taken_over = reserve(api, event, key + "c", seats=["A-2"])
    assert taken_over.status == 201, taken_over.text
    # Best available prefers the lapsed hold's other seat, the front-most.
    assert reserve(api, event, key + "d", quantity=1).body["seats"] == ["A-1"]
    assert_no_seat_twice(db)
    # The lapsed hold cannot be confirmed. That best-available reserve reclaimed it (the expiry has
    # nothing left) and freed only the seat it still had: the one taken over stays taken.
    assert api.confirm(first["reservation_id"], key=key + "e").status == 410
    assert api.invoke_raw(scheduled_event(), "ExpireFunction")["expired"] == 0
    assert seat_map(api, event) == {"A-1": "held", "A-2": "held", "A-3": "available", "A-4": "available"}
    assert api.request("GET", f"/reservations/{first['reservation_id']}").body["seats"] == ["A-1", "A-2"]
    assert_counters_agree_with_rows(db)
    assert_no_seat_twice(db)


def test_a_best_available_reserve_reclaims_the_tiers_lapsed_holds_first(api: Api, key: str, db: Any) -> None:
    event = seated_event(api, rows=[("A", 4), ("B", 4)])
    first = reserve(api, event, key + "a", quantity=2).body
    assert first["seats"] == ["A-1", "A-2"]
    assert reserve(api, event, key + "b", quantity=2).body["seats"] == ["A-3", "A-4"]
    lapse(db, first["reservation_id"])
    again = reserve(api, event, key + "c", quantity=2)
    assert again.status == 201 and again.body["seats"] == ["A-1", "A-2"], again.text
    # Reclaimed on the way, as the expiry job would have: expired, its seats its successor's.
    assert db.execute("SELECT status FROM reservations WHERE reservation_id = %s",
                      (first["reservation_id"],)).fetchone() == ("expired",)
    assert api.invoke_raw(scheduled_event(), "ExpireFunction")["expired"] == 0
    assert_counters_agree_with_rows(db)
    assert_no_seat_twice(db)


def test_reserve_asks_for_a_reclaim_before_choosing_around_lapsed_holds(api: Api, key: str, db: Any) -> None:
    event = seated_event(api, rows=[("A", 4)])
    tier_id = event["tiers"][0]["tier_id"]
    first = reserve(api, event, key + "a", quantity=2).body
    lapse(db, first["reservation_id"])
    call = "SELECT reserve_hold(%s, %s, 2, 'sql-buyer', 'a', gen_random_uuid(), 's', NULL, NULL{})"
    ids = (event["event_id"], tier_id)
    answer = ReserveAnswer(*db.execute(call.format(", NULL, true"), ids, binary=True).fetchone()[0])
    assert answer.answer == {"outcome": "reclaim", "reclaim": True, "tier_id": tier_id, "offer_id": None}
    assert db.execute("SELECT count(*) FROM reservations").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM seats WHERE reservation_id IS NULL").fetchone() == (2,)
    # Without it (the previous release's call; the second call after a reclaim, when another buyer's
    # reclaim of them is under way), the choice goes around them: the next block of the free seats.
    answer = ReserveAnswer(*db.execute(call.format(""), ids, binary=True).fetchone()[0])
    assert answer.answer is None and answer.seats == ["A-3", "A-4"], answer
    assert_counters_agree_with_rows(db)
    assert_no_seat_twice(db)


def test_the_previous_releases_seats_claim_answers_as_it_did(api: Api, key: str, db: Any) -> None:
    # While a deploy runs, the previous release's reserve_seats reads seats_claim's jsonb answer
    # (05_seats.sql is applied before 30_reservations.sql): the shim answers it from the fields.
    event = seated_event(api, rows=[("A", 4)])
    tier_id = event["tiers"][0]["tier_id"]
    held = reserve(api, event, key + "a", seats=["A-2"]).body
    claim = "SELECT seats_claim(%s, %s, %s, gen_random_uuid())"
    with db.transaction(force_rollback=True):
        assert db.execute(claim, (tier_id, None, 2)).fetchone()[0] == {"outcome": "claimed", "seats": ["A-3", "A-4"]}
    with db.transaction(force_rollback=True):
        assert db.execute(claim, (tier_id, [1, 2], 2)).fetchone()[0] == {"outcome": "seats_unavailable",
                                                                           "unavailable_seats": ["A-2"]}
    with db.transaction(force_rollback=True):
        assert db.execute(claim, (tier_id, None, 4)).fetchone()[0] == {"outcome": "short"}
    lapse(db, held["reservation_id"])
    with db.transaction(force_rollback=True):
        assert db.execute("SELECT seats_claim(%s, NULL, 1, gen_random_uuid(), true)",
                          (tier_id,)).fetchone()[0] == {"outcome": "reclaim"}


def test_a_full_tier_sells_a_lapsed_holds_seats(api: Api, key: str, db: Any) -> None:
    event = seated_event(api, rows=[("A", 3)])
    held = reserve(api, event, key + "a", quantity=3).body
    assert reserve(api, event, key + "b", quantity=1).error_code == "sold_out"
    lapse(db, held["reservation_id"])
    again = reserve(api, event, key + "c", quantity=2)
    assert again.status == 201 and again.body["seats"] == ["A-1", "A-2"]
    assert reserve(api, event, key + "d", seats=["A-3"]).status == 201
    assert_counters_agree_with_rows(db)
    assert_no_seat_twice(db)


def test_confirm_gives_each_ticket_its_seat_and_check_in_is_unchanged(api: Api, key: str, db: Any) -> None:
    event = seated_event(api)
    held = reserve(api, event, key + "a", seats=["B-4", "B-5"]).body
    confirmed = api.confirm(held["reservation_id"], key=key + "b")
    assert confirmed.status == 200, confirmed.text
    tickets = confirmed.body["tickets"]
    assert [t["seat"] for t in tickets] == ["B-4", "B-5"] and confirmed.body["seats"] == ["B-4", "B-5"]
    assert seat_map(api, event)["B-4"] == "sold"
    lapse(db, held["reservation_id"])  # a sale is not a hold: it never lapses
    assert seat_map(api, event)["B-5"] == "sold"
    assert reserve(api, event, key + "c", seats=["B-5"]).error_code == "seats_unavailable"
    checked = api.request("POST", f"/tickets/{tickets[0]['ticket_code']}/check-in", admin=True)
    assert checked.status == 200 and set(checked.body) == {"ticket_code", "checked_in_at", "event_id"}
    # A general-admission ticket has no seat.
    ga = api.create_event()
    ga_hold = api.reserve(ga["event_id"], 1, key=key + "g").body
    assert list(api.confirm(ga_hold["reservation_id"], key=key + "h").body["tickets"][0]) == ["ticket_code"]


def test_a_confirm_after_a_takeover_refunds(api: Api, key: str, db: Any) -> None:
    event = seated_event(api, rows=[("A", 2)])
    held = reserve(api, event, key + "a", seats=["A-1"]).body
    lapse(db, held["reservation_id"])
    assert reserve(api, event, key + "b", seats=["A-1"]).status == 201
    # As if the confirm had checked the hold a moment before it lapsed: the seat is gone, so no sale.
    result = db.execute("SELECT confirm_reservation(%s, 'claim', 'intent', 'txn-1', 3000)",
                        (held["reservation_id"],)).fetchone()[0]
    assert result["outcome"] == "reservation_expired" and result["refund"]["transaction_id"] == "txn-1"
    assert_no_seat_twice(db)


def test_idempotent_replay_and_limits(api: Api, key: str, db: Any) -> None:
    event = seated_event(api, max_per_customer=3)
    first = reserve(api, event, key, seats=["A-1", "A-2"], device="d1")
    replay = reserve(api, event, key, seats=["A-1", "A-2"], device="d1")
    assert (replay.status, replay.body) == (201, first.body)
    reused = reserve(api, event, key, seats=["A-3"], device="d1")
    assert (reused.status, reused.error_code) == (422, "idempotency_key_reused")
    over = reserve(api, event, key + "b", seats=["A-3", "A-4"], device="d1")
    assert (over.status, over.error_code, over.body["error"]["remaining"]) == (422, "limit_exceeded", 1)
    assert reserve(api, event, key + "c", quantity=1, device="d1").status == 201
    assert seat_map(api, event)["A-4"] == "available"
    assert db.execute("SELECT count(*) FROM reservations").fetchone()[0] == 2


def test_a_seated_tier_inside_a_hall_quota_with_an_offer(api: Api, key: str, db: Any) -> None:
    event = api.create_event(
        tiers=[{"name": "Stalls", "seating": "assigned", "price": 1000, "rows": [{"row": "A", "seats": 5}]},
               {"name": "Standing", "capacity": 10, "price": 500}],
        quotas=[{"name": "Hall", "capacity": 6, "tiers": ["Stalls", "Standing"]}])
    created = api.request("POST", f"/events/{event['event_id']}/offers", admin=True,
                          body={"code": "HALF", "percent_off": 50, "max_claims": 5})
    assert created.status == 201
    held = reserve(api, event, key + "a", seats=["A-2", "A-3"], offer_code="HALF")
    assert held.status == 201 and (held.body["discount_amount"], held.body["total_amount"]) == (1000, 1000)
    assert reserve(api, event, key + "b", quantity=3, tier=1).status == 201
    availability = api.availability(event["event_id"])
    assert [t["available_seats"] for t in availability["tiers"]] == [1, 1]
    short = reserve(api, event, key + "c", seats=["A-4", "A-5"])
    assert (short.status, short.error_code, short.body["error"]["available_seats"]) == (
        409, "insufficient_inventory", 1)
    assert seat_map(api, event)["A-4"] == "available"  # the refused claim let go of its seats
    assert reserve(api, event, key + "d", quantity=1).body["seats"] == ["A-1"]
    assert reserve(api, event, key + "e", quantity=1).error_code == "sold_out"
    assert_counters_agree_with_rows(db)
    assert_no_seat_twice(db)


def test_seat_map_refusals(api: Api) -> None:
    event = seated_event(api)
    tier_id = event["tiers"][0]["tier_id"]
    unknown = "00000000-0000-4000-8000-000000000000"
    assert api.request("GET", f"/events/{unknown}/tiers/{tier_id}/seats").error_code == "event_not_found"
    assert api.request("GET", f"/events/{event['event_id']}/tiers/{unknown}/seats").error_code == "tier_not_found"
    assert api.request("GET", f"/events/{event['event_id']}/tiers/nope/seats").status == 404


# ----- races -----

def test_thirty_buyers_for_one_seat(api: Api, environments: Api, key: str, db: Any) -> None:
    event = seated_event(api)
    responses = race(30, lambda n: reserve(environments, event, f"{key}-{n}", seats=["A-1"], device=f"b-{n}"))
    assert [r.status for r in responses].count(201) == 1
    assert all((r.status, r.error_code) == (409, "seats_unavailable") and r.body["error"]["unavailable_seats"]
               == ["A-1"] for r in responses if r.status != 201)
    assert_counters_agree_with_rows(db)
    assert_no_seat_twice(db)


def test_overlapping_seat_sets_never_share_a_seat(api: Api, environments: Api, key: str, db: Any) -> None:
    event = seated_event(api, rows=[("A", 12)])

    def contender(n: int) -> ApiResponse:
        start = 1 + n % 10
        return reserve(environments, event, f"{key}-{n}", seats=[f"A-{start}", f"A-{start + 1}", f"A-{start + 2}"],
                       device=f"b-{n}")

    responses = race(40, contender)
    won = [r for r in responses if r.status == 201]
    others = [r.text for r in responses if r.status != 201 and r.error_code != "seats_unavailable"]
    assert won and not others
    seats = [seat for r in won for seat in r.body["seats"]]
    assert len(seats) == len(set(seats))
    assert_counters_agree_with_rows(db)
    assert_no_seat_twice(db)


@pytest.mark.parametrize("capacity", [40, 150])
def test_best_available_under_fifty_buyers(api: Api, environments: Api, key: str, db: Any, capacity: int) -> None:
    event = seated_event(api, rows=[(f"R{n}", 10) for n in range(capacity // 10)])
    quantities = [1 + n % 4 for n in range(50)]
    responses = race(50, lambda n: reserve(environments, event, f"{key}-{n}", quantity=quantities[n],
                                           device=f"b-{n}"))
    assert not [r.text for r in responses
                if r.status != 201 and r.error_code not in ("sold_out", "insufficient_inventory")]
    won = [r for r in responses if r.status == 201]
    seats = [seat for r in won for seat in r.body["seats"]]
    assert len(seats) == len(set(seats))
    held = db.execute("SELECT count(*) FROM seats WHERE reservation_id IS NOT NULL").fetchone()[0]
    assert held == len(seats) == min(sum(quantities), capacity) or all(
        # Refused only when fewer seats were left than asked.
        r.body["error"]["available_seats"] < quantities[n] for n, r in enumerate(responses) if r.status == 409)
    if capacity >= sum(quantities):
        assert held == sum(quantities) and len(won) == 50
    assert_counters_agree_with_rows(db)
    assert_no_seat_twice(db)


def test_cancel_expiry_and_reserves_race_on_seats(api: Api, environments: Api, key: str, db: Any) -> None:
    event = seated_event(api, rows=[("A", 10), ("B", 10)])
    holds = [reserve(api, event, f"{key}-h{n}", seats=[f"A-{n + 1}"]).body for n in range(6)]
    for hold in holds[:3]:
        lapse(db, hold["reservation_id"])

    def contender(n: int) -> Any:
        if n < 3:
            return environments.request("DELETE", f"/reservations/{holds[3 + n]['reservation_id']}")
        if n == 3:
            return environments.invoke_raw(scheduled_event(), "ExpireFunction")
        if n < 12:
            return reserve(environments, event, f"{key}-{n}", seats=[f"A-{1 + n % 6}"], device=f"b-{n}")
        return reserve(environments, event, f"{key}-{n}", quantity=1 + n % 3, device=f"b-{n}")

    results = race(30, contender)
    assert not [r.text for r in results[4:] if r.status not in (201, 409)]
    assert_counters_agree_with_rows(db)
    assert_no_seat_twice(db)
    live = db.execute("SELECT coalesce(sum(quantity), 0) FROM reservations WHERE status = 'held'"
                      " AND expires_at > now()").fetchone()[0]
    assert list(seat_map(api, event).values()).count("held") == live
