"""The queries that reserve runs on every call stay bounded by indexes as live holds pile up.

A plan, not a timing: with thousands of live holds on a tier, the lapsed-hold sums of
counter_available must be an index range on expires_at (lapse_horizon(), 00_rules.sql), never a
filter evaluated on every live hold of the tier (which made each reserve 4x slower at 20,000).
"""

from __future__ import annotations

from typing import Any

from tests.support.api import Api

LIVE_HOLDS = 5000


def plan(db: Any, query: str, *params: Any) -> str:
    return "\n".join(row[0] for row in db.execute("EXPLAIN " + query, params))


def test_lapsed_hold_sums_are_index_ranges_whatever_the_live_holds(api: Api, db: Any) -> None:
    event = api.create_event(tiers=[{"name": "GA", "capacity": 100_000, "price": 100}])
    tier_id = event["tiers"][0]["tier_id"]
    db.execute("""
        INSERT INTO reservations (reservation_id, booking_reference, event_id, tier_id, quantity, status,
                                  customer_fingerprint, total_amount, currency, created_at, expires_at,
                                  reservation_secret)
        SELECT gen_random_uuid(), 'PLAN-' || n, %s, %s, 1, 'held', 'buyer-' || n, 100, 'EUR', now(),
               now() + interval '10 minutes', 'secret'
        FROM generate_series(1, %s) AS n""", (event["event_id"], tier_id, LIVE_HOLDS))
    db.execute("ANALYZE reservations")
    by_tier = plan(db, "SELECT sum(quantity) FROM reservations WHERE tier_id = %s AND status = 'held'"
                       " AND hold_lapsed(expires_at)", tier_id)
    assert "Index Cond" in by_tier and "expires_at <= lapse_horizon()" in by_tier, by_tier
    assert "Filter: (expires_at" not in by_tier, by_tier
    by_offer = plan(db, "SELECT count(*) FROM reservations WHERE offer_id = %s AND status = 'held'"
                        " AND hold_lapsed(expires_at)", tier_id)
    assert "Seq Scan" not in by_offer, by_offer
    # And the function still counts what those ranges find. (The holds above took no seats from the
    # counter, written straight into the table: counter_available adds the lapsed ones to its free seats.)
    assert db.execute("SELECT counter_available(%s)", (tier_id,)).fetchone()[0] == 100_000
    db.execute("UPDATE reservations SET expires_at = now() - interval '1 second'"
               " WHERE booking_reference IN ('PLAN-1', 'PLAN-2', 'PLAN-3')")
    assert db.execute("SELECT counter_available(%s)", (tier_id,)).fetchone()[0] == 100_003
