"""The queries that reserve runs on every call stay bounded by indexes as the tables grow.

Plans, not timings: with thousands of live holds on a tier, the lapsed-hold sums of
counter_available must be an index range on expires_at (lapse_horizon(), 00_rules.sql), never a
filter evaluated on every live hold of the tier (which made each reserve 4x slower at 20,000); and
reserve's generic plans (10_inventory.sql) must read free seats in index order however many
analyzed tiers the seats table holds; and a general-admission or best-available reserve makes only
the function calls it needs (each costs about as much as a statement on a hot tier); and a reserve's
reclaim reads only its own tiers' lapsed holds.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from tests.support.api import Api
from tickets.domain.reservations import ReserveAnswer

LIVE_HOLDS = 5000


def plan(db: Any, query: str, *params: Any) -> str:
    return "\n".join(row[0] for row in db.execute("EXPLAIN " + query, params))


def test_lapsed_hold_sums_are_index_ranges_whatever_the_live_holds(api: Api, db: Any) -> None:
    event = api.create_event(tiers=[{"name": "GA", "capacity": 100_000, "price": 100}])
    tier_id = event["tiers"][0]["tier_id"]
    insert_holds(db, event["event_id"], tier_id, LIVE_HOLDS, "10 minutes")
    db.execute("ANALYZE reservations")
    by_tier = plan(db, "SELECT sum(quantity) FROM reservations WHERE status = 'held'"
                       " AND hold_lapsed_on(%s, tier_id, expires_at)", tier_id)
    assert "reservations_held_by_tier" in by_tier and "Index Cond" in by_tier, by_tier
    assert "lapse_horizon()" not in by_tier.split("Index Cond")[0] and "Filter" not in by_tier, by_tier
    by_offer = plan(db, "SELECT count(*) FROM reservations WHERE status = 'held'"
                        " AND hold_lapsed_on(%s, offer_id, expires_at)", tier_id)
    assert "reservations_held_by_offer" in by_offer and "Filter" not in by_offer, by_offer
    # And the function still counts what those ranges find. (The holds above took no seats from the
    # counter, written straight into the table: counter_available adds the lapsed ones to its free seats.)
    assert db.execute("SELECT counter_available(%s)", (tier_id,)).fetchone()[0] == 100_000
    db.execute("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE reservation_id IN"
               " (SELECT reservation_id FROM reservations WHERE tier_id = %s LIMIT 3)", (tier_id,))
    assert db.execute("SELECT counter_available(%s)", (tier_id,)).fetchone()[0] == 100_003


def nested_plans(db: Any, query: str, *params: Any, analyze: bool = False) -> tuple[Any, list[str]]:
    """The query's answer, and the plans of the statements it ran, sent to this client as
    auto_explain notices (with analyze, each node's rows and the pages it read)."""
    plans: list[str] = []
    with psycopg.connect(db.info.dsn, password=db.info.password, autocommit=True) as conn:
        try:
            conn.execute("LOAD 'auto_explain'")
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("auto_explain needs a superuser connection (DATABASE_URL's role is not one)")
        settings = ["log_min_duration = 0", "log_nested_statements = on", "log_level = notice"]
        if analyze:
            settings += ["log_analyze = on", "log_buffers = on", "log_timing = off"]
        for setting in settings:
            conn.execute(f"SET auto_explain.{setting}")
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        row = conn.execute(query, params, binary=True).fetchone()
    assert row is not None
    return row[0], plans


def test_reserve_plans_are_generic_and_read_free_seats_in_index_order_among_many_tiers(api: Api, db: Any) -> None:
    # Five analyzed stadium tiers. (With a LIMIT of 2,000, step 0's read of free seats got a generic plan
    # that sorted every free seat of the tier, 7-11 ms a try, in bench-db's cluster; whether PostgreSQL
    # prefers that plan also turns on how the tiers' random ids lie in the table, which this test does
    # not pin, so it checks the plan used and that it is generic: bench-db measures the rest.)
    rows = [{"row": f"R{n}", "seats": 50} for n in range(1, 401)]
    events = [api.create_event(tiers=[{"name": "Stand", "seating": "assigned", "price": 100, "rows": rows}])
              for _ in range(5)]
    event = events[-1]
    tier_id = event["tiers"][0]["tier_id"]
    db.execute("ANALYZE")
    answer, plans = nested_plans(db, "SELECT reserve_hold(%s, %s, 2, 'plan-buyer', 'a', gen_random_uuid(), 's',"
                                     " NULL, NULL)", event["event_id"], tier_id)
    assert held(answer).seats == ["R1-1", "R1-2"], answer
    read = [text for text in plans if "FROM seats" in text and "ORDER BY seat_no LIMIT" in text
            and "FOR UPDATE" not in text]
    assert read, plans
    assert "Index Scan using seats_free" in read[0] and "Sort" not in read[0], read[0]
    # Generic: the plan names the parameters, not this call's values.
    assert "tier_id = $" in read[0], read[0]
    # The lock of the first block nobody is claiming reads the free seats in order up to it, not a look-up
    # of every block read, each fetched and then all sorted (`= ANY` as an index condition).
    lock = [text for text in plans if "FROM seats" in text and "LIMIT 1 FOR UPDATE SKIP LOCKED" in text]
    assert lock, plans
    assert "Index Scan using seats_free" in lock[0] and "Sort" not in lock[0], lock[0]
    # And the counter's share UPDATE, which PostgreSQL's own choice re-planned on every reserve.
    share = [text for text in plans if "UPDATE counter_shares" in text]
    assert share and "counter_id = $" in share[0], plans


def held(answer: Any) -> ReserveAnswer:
    """reserve_hold's record as the domain reads it, of a reserve that held."""
    hold = ReserveAnswer(*answer)
    assert hold.answer is None, hold.answer
    return hold


def reserve_counting_calls(db: Any, event_id: str, tier_id: str,
                           offer_code: str | None) -> tuple[ReserveAnswer, dict[str, int]]:
    """reserve_hold's answer, and the functions a reserve calls with their counts once the session has
    planned its statements (the second reserve): plpgsql and sql alike (an inlined sql function is
    part of its caller's statement, and not counted; one that planning evaluates, only then)."""
    reserve = "SELECT reserve_hold(%s, %s, 2, 'calls-buyer', 'a', gen_random_uuid(), 's', NULL, %s)"
    counted = "SELECT funcname, calls FROM pg_stat_xact_user_functions"
    with psycopg.connect(db.info.dsn, password=db.info.password) as conn:
        try:
            conn.execute("SET LOCAL track_functions = 'all'")
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("track_functions needs a superuser connection (DATABASE_URL's role is not one)")
        conn.execute(reserve, (event_id, tier_id, offer_code))
        planned = dict(conn.execute(counted).fetchall())
        answer = conn.execute(reserve, (event_id, tier_id, offer_code), binary=True).fetchone()
        calls = {name: count - planned.get(name, 0) for name, count in conn.execute(counted).fetchall()
                 if count > planned.get(name, 0)}
    assert answer is not None
    return held(answer[0]), calls


def test_general_admission_reserve_calls_only_these_functions(api: Api, db: Any) -> None:
    # On a hot tier each plpgsql call on reserve's path costs about as much as the statement it runs
    # (10_inventory.sql): the booking reference, the new hold's answer (its status without reading
    # the clock) and the first look at the counters (the offer's too) are inlined sql, steps 1 and 2
    # are blocks of counter_take, and a tier's one counter is taken without inventory_take.
    event = api.create_event(tiers=[{"name": "GA", "capacity": 10_000, "price": 100}])
    tier_id = event["tiers"][0]["tier_id"]
    answer, calls = reserve_counting_calls(db, event["event_id"], tier_id, None)
    assert answer.booking_reference is not None and answer.booking_reference.startswith("EVT-"), answer
    assert calls == {"reserve_hold": 1, "counter_take": 1}, calls
    offer = api.request("POST", f"/events/{event['event_id']}/offers", admin=True,
                        body={"code": "CALLS", "percent_off": 10, "max_claims": 1000})
    assert offer.status == 201, offer.body
    answer, calls = reserve_counting_calls(db, event["event_id"], tier_id, "calls")
    assert answer.offer_code == "CALLS" and answer.discount_amount == 20, answer
    assert calls == {"reserve_hold": 1, "inventory_take": 1, "counter_take": 2}, calls


def test_best_available_reserve_calls_only_these_functions(api: Api, db: Any) -> None:
    # The same on an assigned-seating tier: step 0's tries are part of seats_claim_labels, each try one call.
    event = api.create_event(tiers=[{"name": "Stand", "seating": "assigned", "price": 100,
                                     "rows": [{"row": "R1", "seats": 50}, {"row": "R2", "seats": 50}]}])
    answer, calls = reserve_counting_calls(db, event["event_id"], event["tiers"][0]["tier_id"], None)
    assert answer.seats == ["R1-3", "R1-4"], answer  # (the first reserve held R1-1 and R1-2)
    # (lapse_horizon: the bound of the look for the tier's lapsed holds, once a scan)
    assert calls == {"reserve_hold": 1, "seats_claim_labels": 1, "seats_try_block": 1, "counter_take": 1,
                     "lapse_horizon": 1}, calls


def insert_holds(db: Any, event_id: str, tier_id: str, count: int, expires_in: str,
                 offer: tuple[str, str] | None = None) -> None:
    """count holds of one seat each, written straight into the table (no counter or seat taken), each
    expiring a millisecond after the last (as holds made one by one do: equal keys would share index
    entries); with offer, (offer_id, code), made with that offer (no claim taken)."""
    offer_id, offer_code = offer or (None, None)
    db.execute("""
        INSERT INTO reservations (reservation_id, booking_reference, event_id, tier_id, quantity, status,
                                  customer_fingerprint, total_amount, currency, created_at, expires_at,
                                  reservation_secret, offer_id, offer_code)
        SELECT gen_random_uuid(), 'HOLD-' || gen_random_uuid(), %s, %s, 1, 'held', 'buyer-' || n, 100, 'EUR',
               now() - interval '20 minutes', now() + %s::interval + n * interval '1 ms', 'secret', %s, %s
        FROM generate_series(1, %s) AS n""", (event_id, tier_id, expires_in, offer_id, offer_code, count))


def lapsed_hold_reads(plans: list[str]) -> list[tuple[str, int]]:
    """The statements that looked for lapsed holds, and the pages their scans of reservations read."""
    looks = [text for text in plans if "lapse_horizon()" in text and "reservations" in text]
    assert looks, plans
    reads = []
    for text in looks:
        pages, scans, in_scan = 0, 0, False
        for line in text.split("\n"):
            if "->" in line or line.startswith(("Result", "Aggregate")):
                in_scan = " on reservations " in line
                scans += in_scan
            elif in_scan and "Buffers: shared" in line:
                pages += sum(int(count) for count in re.findall(r"(?:hit|read)=(\d+)", line))
        assert scans, text
        reads.append((text, pages))
    return reads


def test_a_tiers_lapsed_holds_are_read_alone_not_its_live_holds_nor_other_tiers(api: Api, db: Any) -> None:
    # Between two runs of the expiry schedule an on-sale leaves thousands of lapsed holds, while the
    # tier on sale has thousands of live ones. A question about one tier's lapsed holds read, in
    # generic plans, every tier's lapsed holds (by expiry, testing each one's tier), or the whole
    # table (statistics of few tiers), or, read forwards, every live hold of the tier: on every
    # best-available seated reserve, and every refusal that counts what a tier has left.
    general = api.create_event(tiers=[{"name": "GA", "capacity": 100_000, "price": 100}])
    insert_holds(db, general["event_id"], general["tiers"][0]["tier_id"], LIVE_HOLDS, "-10 minutes")
    seated = api.create_event(tiers=[{"name": "Stand", "seating": "assigned", "price": 100,
                                      "rows": [{"row": f"R{n}", "seats": 50} for n in range(1, 21)]}])
    seated_tier = seated["tiers"][0]["tier_id"]
    insert_holds(db, seated["event_id"], seated_tier, LIVE_HOLDS, "10 minutes")
    db.execute("ANALYZE")

    answer, plans = nested_plans(db, "SELECT reserve_hold(%s, %s, 2, 'plan-buyer', 'a', gen_random_uuid(), 's',"
                                     " NULL, NULL)", seated["event_id"], seated_tier, analyze=True)
    assert held(answer).seats == ["R1-1", "R1-2"], answer
    # (5,000 entries of either kind fill over 20 index pages: measured, the look by expiry read 140 pages
    # and a forward read of the tier's range 27; a look that reads a few pages read none of them.)
    for text, buffers in lapsed_hold_reads(plans):
        assert "reservations_held_by_tier" in text and buffers <= 6, text

    available, plans = nested_plans(db, "SELECT counter_available(%s)", seated_tier, analyze=True)
    assert available == 1000 - 2
    for text, buffers in lapsed_hold_reads(plans):
        assert "Seq Scan on reservations" not in text and buffers <= 12, text
    # And it still counts the lapsed holds it reads.
    assert db.execute("SELECT counter_available(%s)", (general["tiers"][0]["tier_id"],)).fetchone()[0] \
        == 100_000 + LIVE_HOLDS


def test_a_reserves_reclaim_reads_its_own_tiers_lapsed_holds_not_every_tiers(api: Api, db: Any) -> None:
    # A reserve refused while lapsed holds block its seats reclaims them (reclaim_lapsed_for_tier) and
    # asks again: one question over its tiers by expiry read every tier's lapsed holds (140 pages with
    # 5,000 of another tier's), and the update found the 3 it chose by scanning the whole table.
    other = api.create_event(tiers=[{"name": "GA", "capacity": 100_000, "price": 100}])
    insert_holds(db, other["event_id"], other["tiers"][0]["tier_id"], LIVE_HOLDS, "-10 minutes")
    mine = api.create_event(tiers=[{"name": "GA", "capacity": 1000, "price": 100}])
    tier_id = mine["tiers"][0]["tier_id"]
    insert_holds(db, mine["event_id"], tier_id, 3, "-5 minutes")
    db.execute("ANALYZE")

    reclaimed, plans = nested_plans(db, "SELECT reclaim_lapsed_for_tier(%s, NULL)", tier_id, analyze=True)
    assert reclaimed == {"expired": 3, "seats": 3}, reclaimed
    # (The tier's range, then each hold it found again by id, to lock them in id order: 15 pages.)
    for text, buffers in lapsed_hold_reads(plans):
        assert "reservations_held_by_tier" in text and buffers <= 20, text
    assert not [text for text in plans if "Seq Scan on reservations" in text], plans
    # Only this tier's: the other tier's lapsed holds wait for the expiry schedule.
    assert db.execute("SELECT count(*) FROM reservations WHERE tier_id = %s AND status = 'held'",
                      (other["tiers"][0]["tier_id"],)).fetchone()[0] == LIVE_HOLDS


def analyzed_reserve_plans(db: Any, event: dict[str, Any]) -> tuple[Any, list[str]]:
    """The answer and the plans (with the pages each node read) of a one-seat reserve on the event's
    first tier, every table analyzed first; the reserve must hold."""
    db.execute("ANALYZE")
    answer, plans = nested_plans(db, "SELECT reserve_hold(%s, %s, 1, 'plans-buyer', 'a', gen_random_uuid(), 's',"
                                     " NULL, NULL)", event["event_id"], event["tiers"][0]["tier_id"], analyze=True)
    return held(answer), plans


def test_the_first_look_reads_one_share_of_each_counter_not_all_of_them(api: Api, db: Any) -> None:
    # A hot tier has 64 shares under one key (and a quota 64 more): the look for a share with room
    # stops at the first, in key order. As a bitmap scan (PostgreSQL's choice for EXISTS over an
    # analyzed table), it read every share's index entry and set up a bitmap on every reserve:
    # 2.6% of a reserve's instructions (callgrind).
    event = api.create_event(tiers=[{"name": "GA", "capacity": 10_000, "price": 100},
                                    {"name": "VIP", "capacity": 10_000, "price": 300}],
                             quotas=[{"name": "Hall", "capacity": 15_000, "tiers": ["GA", "VIP"]}])
    _, plans = analyzed_reserve_plans(db, event)
    look = [text for text in plans if "tier_counters_with_room" in text]
    assert look, plans
    assert "Bitmap" not in look[0] and "Index Scan using counter_shares_pkey" in look[0], look[0]


def test_a_reserve_reads_its_counters_shares_by_key_not_the_counters_table(api: Api, db: Any) -> None:
    # counter_take needs the number of shares: read as the last share's number, one index entry. As a
    # STRICT read of counters, it scanned the whole table wherever PostgreSQL scans a small table
    # rather than use its key (10% of a hot reserve, callgrind, with bench-db's 263 counters); a
    # release's scalar subquery over counters did the same.
    event = api.create_event(tiers=[{"name": "GA", "capacity": 10_000, "price": 100}])
    answer, plans = analyzed_reserve_plans(db, event)
    assert not [text for text in plans if "on counters" in text], plans
    last = [text for text in plans if "ORDER BY share DESC LIMIT 1" in text]
    assert last and "Scan Backward using counter_shares_pkey" in last[0], plans
    # And the hold's cancel gives its seat back to a random share chosen the same way (counter_release).
    (reservation_id,) = db.execute("SELECT reservation_id FROM reservations WHERE booking_reference = %s",
                                   (answer.booking_reference,)).fetchone()
    cancelled, plans = nested_plans(db, "SELECT cancel_reservation(%s, 's')", reservation_id, analyze=True)
    assert cancelled["outcome"] == "cancelled", cancelled
    assert not [text for text in plans if "on counters" in text], plans
    last = [text for text in plans if "ORDER BY share DESC LIMIT 1" in text]
    assert last and "Scan Backward using counter_shares_pkey" in last[0], plans


def test_a_reserve_planned_while_reservations_is_empty_reads_it_by_key(api: Api, db: Any) -> None:
    # A new database's first on-sale: a connection's first reserve plans its statements while the
    # table is empty, and keeps the plans until autovacuum's first analyze (up to a minute later).
    # Planned on an empty table, the look for the request's key, the buyer's and the address's
    # counts and the seated tier's lapsed-hold probe were sequential scans, so every reserve of that
    # minute read every hold made so far (measured: the probe 0.12 ms -> 1.5 ms over 3,000 holds).
    event = api.create_event(max_per_customer=10, max_holds_per_ip=10,
                             tiers=[{"name": "Stand", "seating": "assigned", "price": 100,
                                     "rows": [{"row": "A", "seats": 20}]}])
    assert db.execute("SELECT count(*) FROM reservations").fetchone() == (0,)
    db.execute("ANALYZE")  # (statistics of an empty table: without them, PostgreSQL assumes ten pages)
    answer, plans = nested_plans(db, "SELECT reserve_hold(%s, %s, 2, 'plan-buyer', 'a', gen_random_uuid(), 's',"
                                     " 'plan-request-key', NULL, NULL)",
                                 event["event_id"], event["tiers"][0]["tier_id"])
    held(answer)
    reads = [text for text in plans if "FROM reservations" in text]
    assert len(reads) >= 4, plans
    assert not [text for text in reads if "Seq Scan on reservations" in text], reads
