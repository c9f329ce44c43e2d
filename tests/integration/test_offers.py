"""Offers: limited discount codes whose claims are never over-granted."""

from __future__ import annotations

from typing import Any

import pytest

from localstage.lambda_runtime import scheduled_event
from tests.integration.test_concurrency import assert_counters_agree_with_rows, race
from tests.support.api import Api, ApiResponse


def create_offer(api: Api, event: dict[str, Any], **body: Any) -> ApiResponse:
    return api.request("POST", f"/events/{event['event_id']}/offers", body=body, admin=True)


def reserve(api: Api, event: dict[str, Any], quantity: int, key: str, code: str | None, *,
            tier: int = 0, device: str | None = None) -> ApiResponse:
    body: dict[str, Any] = {"quantity": quantity, "tier_id": event["tiers"][tier]["tier_id"]}
    if code is not None:
        body["offer_code"] = code
    headers = {"Idempotency-Key": key, **({"X-Device-Id": device} if device else {})}
    return api.request("POST", f"/events/{event['event_id']}/reservations", body=body, headers=headers)


def lapse(db: Any, reservation_id: str) -> None:
    db.execute("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE reservation_id = %s",
               (reservation_id,))


def two_tier_event(api: Api, capacity: int = 50) -> dict[str, Any]:
    return api.create_event(tiers=[{"name": "GA", "capacity": capacity, "price": 2599, "max_per_order": 10},
                                   {"name": "VIP", "capacity": capacity, "price": 9000, "max_per_order": 10}])


def test_create_read_and_reserve_with_an_offer(api: Api, key: str, db: Any) -> None:
    event = two_tier_event(api)
    created = create_offer(api, event, code="early20", percent_off=20, max_claims=2)
    assert created.status == 201, created.text
    offer = created.body
    assert (offer["code"], offer["percent_off"], offer["max_claims"], offer["claims_left"]) == ("EARLY20", 20, 2, 2)
    assert sorted(offer["tier_ids"]) == sorted(t["tier_id"] for t in event["tiers"]) and "amount_off" not in offer
    assert api.request("GET", f"/events/{event['event_id']}/offers/Early20").body == offer
    held = reserve(api, event, 3, key + "a", "eArLy20")
    assert held.status == 201, held.text
    # 2599 x 20 / 100 = 519.8, rounded down to 519 per seat
    assert (held.body["offer_code"], held.body["discount_amount"], held.body["total_amount"]) == (
        "EARLY20", 3 * 519, 3 * (2599 - 519))
    assert api.request("GET", f"/events/{event['event_id']}/offers/EARLY20").body["claims_left"] == 1
    confirmed = api.confirm(held.body["reservation_id"], key=key + "ac")
    assert confirmed.body["payment"]["amount"] == 3 * (2599 - 519)
    assert reserve(api, event, 1, key + "b", "EARLY20").status == 201
    exhausted = reserve(api, event, 1, key + "c", "EARLY20")
    assert (exhausted.status, exhausted.error_code) == (409, "offer_exhausted")
    assert reserve(api, event, 1, key + "d", None).status == 201  # the seats are still for sale
    assert_counters_agree_with_rows(db)


def test_amount_off_never_below_zero_and_tier_rules(api: Api, key: str) -> None:
    event = two_tier_event(api)
    vip_only = create_offer(api, event, code="VIPBIG", amount_off=100_000, max_claims=5,
                            tier_ids=[event["tiers"][1]["tier_id"]]).body
    assert vip_only["tier_ids"] == [event["tiers"][1]["tier_id"]]
    free = reserve(api, event, 2, key + "v", "vipbig", tier=1).body
    assert (free["discount_amount"], free["total_amount"]) == (18000, 0)
    wrong_tier = reserve(api, event, 1, key + "g", "VIPBIG", tier=0)
    assert (wrong_tier.status, wrong_tier.error_code) == (422, "offer_not_applicable")
    unknown = reserve(api, event, 1, key + "u", "NOPE1")
    assert (unknown.status, unknown.error_code) == (404, "offer_not_found")
    assert create_offer(api, event, code="vipbig", percent_off=5, max_claims=1).error_code == "offer_code_taken"
    assert api.request("GET", f"/events/{event['event_id']}/offers/NOPE1").error_code == "offer_not_found"


def test_an_offer_past_valid_until_is_not_applicable(api: Api, key: str, db: Any) -> None:
    event = two_tier_event(api)
    create_offer(api, event, code="SOON", percent_off=10, max_claims=5, valid_until="2031-01-01T00:00:00Z")
    db.execute("UPDATE offers SET valid_until = now() - interval '1 second'")
    late = reserve(api, event, 1, key, "SOON")
    assert (late.status, late.error_code) == (422, "offer_not_applicable")


def test_sold_out_wins_over_an_exhausted_offer(api: Api, key: str) -> None:
    event = api.create_event(tiers=[{"name": "GA", "capacity": 2, "price": 100}])
    create_offer(api, event, code="ONE", percent_off=50, max_claims=1)
    assert reserve(api, event, 2, key + "a", "ONE").status == 201
    refused = reserve(api, event, 1, key + "b", "ONE")
    assert (refused.status, refused.error_code) == (409, "sold_out")


def test_cancelled_and_lapsed_holds_give_their_claim_back(api: Api, key: str, db: Any) -> None:
    event = two_tier_event(api)
    create_offer(api, event, code="TWO", amount_off=100, max_claims=2)
    first = reserve(api, event, 1, key + "1", "TWO").body
    second = reserve(api, event, 1, key + "2", "TWO", tier=1).body
    assert reserve(api, event, 1, key + "3", "TWO").error_code == "offer_exhausted"
    assert api.request("DELETE", f"/reservations/{first['reservation_id']}").status == 200
    assert reserve(api, event, 1, key + "4", "TWO").status == 201
    lapse(db, second["reservation_id"])  # lazily: before the expiry job has run
    assert api.request("GET", f"/events/{event['event_id']}/offers/TWO").body["claims_left"] == 1
    assert reserve(api, event, 1, key + "5", "TWO").status == 201
    for (rid,) in db.execute("SELECT reservation_id::text FROM reservations WHERE status = 'held'").fetchall():
        lapse(db, rid)
    assert api.invoke_raw(scheduled_event(), "ExpireFunction")["expired"] == 2
    assert api.request("GET", f"/events/{event['event_id']}/offers/TWO").body["claims_left"] == 2
    assert_counters_agree_with_rows(db)


@pytest.mark.parametrize("body", [
    {"code": "BOTH", "percent_off": 10, "amount_off": 100, "max_claims": 1},
    {"code": "NEITHER", "max_claims": 1},
    {"code": "ab", "percent_off": 10, "max_claims": 1},
    {"code": "BAD CODE", "percent_off": 10, "max_claims": 1},
    {"code": "ÉTÉ2030", "percent_off": 10, "max_claims": 1},
    {"code": "A" * 33, "percent_off": 10, "max_claims": 1},
    {"code": "OVER", "percent_off": 101, "max_claims": 1},
    {"code": "ZERO", "percent_off": 10, "max_claims": 0},
    {"code": "NOAMOUNT", "amount_off": 0, "max_claims": 1},
    {"code": "PAST", "percent_off": 10, "max_claims": 1, "valid_until": "2020-01-01T00:00:00Z"},
    {"code": "TIERS", "percent_off": 10, "max_claims": 1, "tier_ids": ["00000000-0000-4000-8000-000000000000"]},
    {"code": "EXTRA", "percent_off": 10, "max_claims": 1, "colour": "red"},
])
def test_bad_offers_are_422_and_save_nothing(api: Api, db: Any, body: dict[str, Any]) -> None:
    event = two_tier_event(api)
    response = create_offer(api, event, **body)
    assert (response.status, response.error_code) == (422, "validation_error"), response.text
    assert db.execute("SELECT count(*) FROM offers").fetchone()[0] == 0


def test_offers_need_the_organizer_and_an_event(api: Api) -> None:
    event = two_tier_event(api)
    anonymous = api.request("POST", f"/events/{event['event_id']}/offers",
                            body={"code": "X12", "percent_off": 1, "max_claims": 1})
    assert anonymous.status == 401
    missing = api.request("POST", "/events/00000000-0000-4000-8000-000000000000/offers",
                          body={"code": "X12", "percent_off": 1, "max_claims": 1}, admin=True)
    assert (missing.status, missing.error_code) == (404, "event_not_found")


# ----- races -----

def test_forty_buyers_for_five_claims(api: Api, environments: Api, key: str, db: Any) -> None:
    event = two_tier_event(api, capacity=500)
    create_offer(api, event, code="FIVE", percent_off=50, max_claims=5)
    responses = race(40, lambda n: reserve(environments, event, 1 + n % 3, f"{key}-{n}", "FIVE", tier=n % 2,
                                           device=f"b-{n}"))
    assert [r.status for r in responses].count(201) == 5
    assert all(r.error_code == "offer_exhausted" for r in responses if r.status != 201)
    assert db.execute("SELECT count(*) FROM reservations WHERE offer_id IS NOT NULL").fetchone()[0] == 5
    assert_counters_agree_with_rows(db)


def test_claims_and_seats_running_out_together(api: Api, environments: Api, key: str, db: Any) -> None:
    event = api.create_event(tiers=[{"name": "GA", "capacity": 8, "price": 100, "max_per_order": 2}])
    create_offer(api, event, code="HALF", percent_off=50, max_claims=5)
    responses = race(30, lambda n: reserve(environments, event, 1 + n % 2, f"{key}-{n}", "HALF", device=f"b-{n}"))
    won = [r for r in responses if r.status == 201]
    assert len(won) <= 5 and sum(r.body["quantity"] for r in won) <= 8
    assert all(r.status == 409 and r.error_code in ("offer_exhausted", "sold_out", "insufficient_inventory")
               for r in responses if r.status != 201)
    # Never refused while both a claim and the seats were free.
    seats_left = 8 - sum(r.body["quantity"] for r in won)
    if len(won) < 5:
        assert all(r.body["error"]["available_seats"] < 1 + n % 2
                   for n, r in enumerate(responses) if r.status == 409)
    assert seats_left >= 0
    assert_counters_agree_with_rows(db)


def test_cancel_and_expiry_return_claims_during_a_race(api: Api, environments: Api, key: str, db: Any) -> None:
    event = two_tier_event(api, capacity=200)
    create_offer(api, event, code="RACE", amount_off=10, max_claims=6)
    holds = [reserve(api, event, 1, f"{key}-h{n}", "RACE").body for n in range(6)]
    for hold in holds[:3]:
        lapse(db, hold["reservation_id"])

    def contender(n: int) -> Any:
        if n < 3:
            return environments.request("DELETE", f"/reservations/{holds[3 + n]['reservation_id']}")
        if n == 3:
            return environments.invoke_raw(scheduled_event(), "ExpireFunction")
        return reserve(environments, event, 1, f"{key}-{n}", "RACE", device=f"b-{n}")

    results = race(30, contender)
    reserves = results[4:]
    assert not [r.text for r in reserves if r.status not in (201, 409)]
    live = db.execute("SELECT count(*) FROM reservations WHERE offer_id IS NOT NULL AND status = 'held'"
                      " AND expires_at > now()").fetchone()[0]
    assert live <= 6
    assert api.request("GET", f"/events/{event['event_id']}/offers/RACE").body["claims_left"] == 6 - live
    assert_counters_agree_with_rows(db)
