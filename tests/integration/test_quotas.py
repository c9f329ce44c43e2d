"""Shared capacity: quotas over several tiers, and counters spread over shares, under races."""

from __future__ import annotations

import random
from typing import Any

import pytest

from localstage.lambda_runtime import scheduled_event
from tests.integration.test_concurrency import assert_counters_agree_with_rows, race
from tests.support.api import Api, ApiResponse


def hall_event(api: Api, *, hall: int = 5, early: int = 4, general: int = 10, vip: int = 3,
               **extra: Any) -> dict[str, Any]:
    return api.create_event(
        tiers=[{"name": "Early Bird", "capacity": early, "price": 1000, "max_per_order": 4},
               {"name": "General", "capacity": general, "price": 2000, "max_per_order": 4},
               {"name": "VIP", "capacity": vip, "price": 5000, "max_per_order": 4}],
        quotas=[{"name": "Hall", "capacity": hall, "tiers": ["Early Bird", "General", "VIP"]}], **extra)


def tier_ids(event: dict[str, Any]) -> dict[str, str]:
    return {tier["name"]: tier["tier_id"] for tier in event["tiers"]}


def lapse(db: Any, reservation_id: str) -> None:
    db.execute("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE reservation_id = %s",
               (reservation_id,))


def test_an_event_with_a_quota_reads_back_and_counts_it(api: Api, key: str, db: Any) -> None:
    event = hall_event(api)
    ids = tier_ids(event)
    assert [(q["name"], q["capacity"], sorted(q["tier_ids"])) for q in event["quotas"]] == [
        ("Hall", 5, sorted(ids.values()))]
    fetched = api.request("GET", f"/events/{event['event_id']}").body
    assert fetched["quotas"] == event["quotas"]
    # The smaller of a tier's and its quota's free seats binds.
    availability = api.availability(event["event_id"])
    assert [t["available_seats"] for t in availability["tiers"]] == [4, 5, 3]
    assert availability["quotas"][0]["available_seats"] == 5 and availability["available_seats"] == 5
    assert api.reserve(event["event_id"], 3, key=key + "a", tier_id=ids["General"]).status == 201
    availability = api.availability(event["event_id"])
    assert [t["available_seats"] for t in availability["tiers"]] == [2, 2, 2]
    assert availability["available_seats"] == 2
    refused = api.reserve(event["event_id"], 3, key=key + "b", tier_id=ids["Early Bird"])
    assert (refused.status, refused.error_code, refused.body["error"]["available_seats"]) == (
        409, "insufficient_inventory", 2)
    assert api.reserve(event["event_id"], 2, key=key + "c", tier_id=ids["VIP"]).status == 201
    sold_out = api.reserve(event["event_id"], 1, key=key + "d", tier_id=ids["General"])
    assert (sold_out.status, sold_out.error_code) == (409, "sold_out")
    assert_counters_agree_with_rows(db)


def test_event_total_counts_tiers_outside_the_quota(api: Api) -> None:
    event = api.create_event(
        tiers=[{"name": "Sat", "capacity": 100, "price": 1}, {"name": "Sun", "capacity": 100, "price": 1},
               {"name": "Parking", "capacity": 7, "price": 1}],
        quotas=[{"name": "Weekend", "capacity": 120, "tiers": ["Sat", "Sun"]}])
    availability = api.availability(event["event_id"])
    assert [t["available_seats"] for t in availability["tiers"]] == [100, 100, 7]
    assert availability["available_seats"] == 127  # min(207, 120 + 7)


def test_a_tier_in_two_quotas(api: Api, key: str, db: Any) -> None:
    event = api.create_event(
        tiers=[{"name": "Saturday", "capacity": 50, "price": 1, "max_per_order": 10},
               {"name": "Sunday", "capacity": 50, "price": 1, "max_per_order": 10},
               {"name": "Weekend pass", "capacity": 50, "price": 1, "max_per_order": 10}],
        quotas=[{"name": "Sat hall", "capacity": 10, "tiers": ["Saturday", "Weekend pass"]},
                {"name": "Sun hall", "capacity": 6, "tiers": ["Sunday", "Weekend pass"]}])
    ids = tier_ids(event)
    assert api.reserve(event["event_id"], 5, key=key + "w", tier_id=ids["Weekend pass"]).status == 201
    availability = api.availability(event["event_id"])
    assert [t["available_seats"] for t in availability["tiers"]] == [5, 1, 1]
    assert [q["available_seats"] for q in availability["quotas"]] == [5, 1]
    assert api.reserve(event["event_id"], 2, key=key + "s", tier_id=ids["Sunday"]).status == 409
    assert api.reserve(event["event_id"], 5, key=key + "sat", tier_id=ids["Saturday"]).status == 201
    assert_counters_agree_with_rows(db)


def test_cancel_expiry_and_lapsed_holds_give_seats_back_to_every_counter(api: Api, key: str, db: Any) -> None:
    event = hall_event(api, hall=4)
    ids = tier_ids(event)
    first = api.reserve(event["event_id"], 2, key=key + "1", tier_id=ids["Early Bird"]).body
    second = api.reserve(event["event_id"], 2, key=key + "2", tier_id=ids["VIP"]).body
    assert api.reserve(event["event_id"], 1, key=key + "3", tier_id=ids["General"]).status == 409
    assert api.request("DELETE", f"/reservations/{first['reservation_id']}").status == 200
    assert api.availability(event["event_id"])["quotas"][0]["available_seats"] == 2
    # A lapsed hold in a sibling tier never blocks a sale, before the expiry job has run.
    assert api.reserve(event["event_id"], 2, key=key + "4", tier_id=ids["General"]).status == 201
    lapse(db, second["reservation_id"])
    assert api.availability(event["event_id"])["quotas"][0]["available_seats"] == 2
    assert api.reserve(event["event_id"], 2, key=key + "5", tier_id=ids["Early Bird"]).status == 201
    assert db.execute("SELECT status FROM reservations WHERE reservation_id = %s",
                      (second["reservation_id"],)).fetchone()[0] == "expired"
    # The scheduled expiry returns the seats of what lapses next.
    for hold in db.execute("SELECT reservation_id::text FROM reservations WHERE status = 'held'").fetchall():
        lapse(db, hold[0])
    assert api.invoke_raw(scheduled_event(), "ExpireFunction")["expired"] == 2
    assert api.availability(event["event_id"])["quotas"][0]["available_seats"] == 4
    assert_counters_agree_with_rows(db)


@pytest.mark.parametrize("body", [
    {"quotas": [{"name": "Hall", "capacity": 5, "tiers": ["Nope"]}]},
    {"quotas": [{"name": "Hall", "capacity": 5, "tiers": []}]},
    {"quotas": [{"name": "Hall", "capacity": 0, "tiers": ["General"]}]},
    {"quotas": [{"name": "Hall", "capacity": 1_000_001, "tiers": ["General"]}]},
    {"quotas": [{"name": "Hall", "capacity": 5, "tiers": ["General"], "extra": 1}]},
    {"quotas": [{"name": f"Q{n}", "capacity": 5, "tiers": ["General"]} for n in range(21)]},
])
def test_bad_quotas_are_422_and_save_nothing(api: Api, db: Any, body: dict[str, Any]) -> None:
    payload = {"name": "G", "starts_at": "2030-01-01T00:00:00Z",
               "tiers": [{"name": "General", "capacity": 10, "price": 1}], **body}
    response = api.request("POST", "/events", body=payload, admin=True)
    assert (response.status, response.error_code) == (422, "validation_error"), response.text
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 0


# ----- races -----

def assert_no_false_refusal(quantities: list[int], responses: list[ApiResponse]) -> None:
    assert not [r.text for r in responses if r.status not in (201, 409)]
    for quantity, response in zip(quantities, responses, strict=True):
        if response.status == 409:
            assert response.body["error"]["available_seats"] < quantity, response.text


@pytest.mark.parametrize("seed", [1, 2])
def test_tiers_sharing_a_quota_at_capacity_with_mixed_quantities(api: Api, environments: Api, key: str,
                                                                 db: Any, seed: int) -> None:
    event = hall_event(api, hall=20, early=12, general=12, vip=12)
    ids = list(tier_ids(event).values())
    rng = random.Random(seed)
    asks = [(rng.choice(ids), rng.randint(1, 4)) for _ in range(48)]
    responses = race(48, lambda n: environments.reserve(event["event_id"], asks[n][1], key=f"{key}-{n}",
                                                        tier_id=asks[n][0], device=f"b-{n}"))
    assert_no_false_refusal([q for _, q in asks], responses)
    held = sum(q for (_, q), r in zip(asks, responses, strict=True) if r.status == 201)
    assert held <= 20
    # Whatever is left of the hall is smaller than what each refused buyer asked, in their tier.
    availability = api.availability(event["event_id"])
    assert availability["quotas"][0]["available_seats"] == 20 - held
    assert_counters_agree_with_rows(db)


def test_a_large_tier_over_many_shares_sells_exactly_out(api: Api, environments: Api, key: str, db: Any) -> None:
    """A 600-seat tier is spread over shares; 60 buyers buying 1-4 seats in rounds until none is left:
    exactly 600 sold, never a refusal while the seats asked for were free (fragmented shares near the end)."""
    event = api.create_event(tiers=[{"name": "GA", "capacity": 600, "price": 1, "max_per_order": 4}])
    assert db.execute("SELECT shares FROM counters").fetchone()[0] > 1
    sold, rounds = 0, 0
    while sold < 600 and rounds < 20:
        rounds += 1
        quantities = [random.Random(rounds * 100 + n).randint(1, 4) for n in range(60)]
        tag = f"{key}-{rounds}"

        def buy(n: int, asked: list[int] = quantities, tag: str = tag) -> ApiResponse:
            return environments.reserve(event["event_id"], asked[n], key=f"{tag}-{n}", device=f"{tag}-{n}")

        responses = race(60, buy)
        assert_no_false_refusal(quantities, responses)
        sold += sum(q for q, r in zip(quantities, responses, strict=True) if r.status == 201)
    assert sold == 600
    assert api.availability(event["event_id"])["available_seats"] == 0
    assert_counters_agree_with_rows(db)


def test_cancel_and_expiry_during_a_quota_race(api: Api, environments: Api, key: str, db: Any) -> None:
    event = hall_event(api, hall=12, early=12, general=12, vip=12)
    ids = list(tier_ids(event).values())
    early = [api.reserve(event["event_id"], 2, key=f"{key}-e{n}", tier_id=ids[n % 3]).body for n in range(6)]
    for hold in early[:3]:
        lapse(db, hold["reservation_id"])

    def contender(n: int) -> ApiResponse | Any:
        if n < 3:
            return environments.request("DELETE", f"/reservations/{early[3 + n]['reservation_id']}")
        if n == 3:
            return environments.invoke_raw(scheduled_event(), "ExpireFunction")
        return environments.reserve(event["event_id"], 1 + n % 3, key=f"{key}-{n}", tier_id=ids[n % 3],
                                    device=f"b-{n}")

    results = race(30, contender)
    assert all(r.status == 200 for r in results[:3])
    reserves = results[4:]
    assert not [r.text for r in reserves if r.status not in (201, 409)]
    assert_counters_agree_with_rows(db)
    held = db.execute("SELECT coalesce(sum(quantity), 0) FROM reservations WHERE status = 'held'"
                      " AND expires_at > now()").fetchone()[0]
    assert held <= 12
    # The hall's free seats are what the live holds leave, and every refusal saw fewer than it asked.
    assert api.availability(event["event_id"])["quotas"][0]["available_seats"] == 12 - held
    assert_no_false_refusal([1 + n % 3 for n in range(4, 30)], reserves)
