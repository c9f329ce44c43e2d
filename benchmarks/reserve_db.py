"""What the database takes on a hot on-sale, as ratios against references measured in the same run.

    make bench-db                      # a durable throwaway cluster; or DATABASE_URL=... to measure yours
    BENCH_SECONDS=20 BENCH_ROUNDS=3 BENCH_CLIENTS=1,4,16,64 make bench-db

pgbench drives the SQL function the reserve handler calls (reserve_hold: one statement,
autocommit, simple protocol as behind RDS Proxy; each call a new buyer) in four shapes per
client count:
  row        a bare single-row UPDATE: what one row lock and one commit cost (the reference)
  hot        reserve on ONE tier, too large to sell out
  hot_quota  the same, on a tier whose event also has a quota over all its tiers
  hot_offer  reserve on the hot tier with an offer code (its claims a counter too)
  spread     reserve over 256 tiers, a random one per call (no contention: the ceiling)
  seated     best-available reserves of SEATED_QUANTITY adjacent seats on an assigned-seating tier of
             SEATED_SEATS seats (rows of SEATED_ROW), a fresh tier for each client count, while the
             first SEATED_FILL of its seats sell (a count of transactions, not seconds: a tier sold
             out within the seconds would measure cheap refusals); seated/hot is the ratio to the
             general-admission hot tier of the same run
Then a sell-out: a tier of SELLOUT_SEATS seats, SELLOUT_CLIENTS threads reserving 1-4 seats at
random until it is sold out, counting seats sold and oversold, lock timeouts (what the API answers
503 with Retry-After; the buyer tries again), and false refusals: a refusal whose
available_seats is at least the quantity asked, or a sold_out answered before a reserve that
started after it still got seats (no seat is ever given back in this run, so the count only falls).
Then a named-seat storm: STORM_CLIENTS threads asking for 1-2 adjacent seats of one row (row A of
an assigned-seating tier) until the row is gone, counting holds, 409 seats_unavailable and double
bookings: a seat in two live holds (there must be none).
Each client count is measured BENCH_ROUNDS times (rounds over all counts); the tables give each
round's figures and each ratio's median with its lowest and highest: an 8 s point on a shared
2-core machine moves by 10-20% from one run to the next.
Every table is analyzed after the events are made and before they are measured, as a production
database's are by the time its on-sale starts: PostgreSQL plans a function's statements differently
with statistics, and autovacuum analyzing part-way through a run made the figures depend on when.
Writes benchmarks/results/bench-db.json. The figures are this machine's, not AWS's.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from localstage.postgres import bin_dir
from localstage.runtime import LocalBackends
from localstage.template import load_template
from tickets.domain.events import create_event
from tickets.domain.offers import create_offer
from tickets.domain.reservations import ReserveAnswer
from tickets.models.events import EventCreate
from tickets.models.offers import OfferCreate

RESULTS = Path(__file__).parent / "results" / "bench-db.json"
CAPACITY = 1_000_000
SPREAD_TIERS = 256
SELLOUT_SEATS = int(os.environ.get("SELLOUT_SEATS", "20000"))
SELLOUT_CLIENTS = int(os.environ.get("SELLOUT_CLIENTS", "64"))
SEATED_SEATS = int(os.environ.get("SEATED_SEATS", "20000"))
SEATED_ROW = 50
SEATED_QUANTITY = int(os.environ.get("SEATED_QUANTITY", "2"))
SEATED_FILL = 0.8
STORM_CLIENTS = int(os.environ.get("STORM_CLIENTS", "64"))
STORM_ROW = 40

# One seat for a new buyer each call. The buyer and the reservation id are values, as the reserve
# handler sends them (it computes both in Python): pgbench writes its random numbers into the
# literals (it replaces a variable inside one too). Formed by SQL, `'b-' || :client_id` made
# PostgreSQL resolve and inline anytextcat (a sql function) as it planned every call, and
# gen_random_uuid() drew from OpenSSL: work no reserve does, which held hot/row at 64 clients to
# 1.47 where these scripts measure 1.69 (same run, medians of 5 rounds; README). About 7*10^18 ids.
# Every argument is given, as the domain gives them (no seats named; p_reclaim true, its first
# call): left out, PostgreSQL read the defaults of the two last ones from the catalog and parsed
# them on every call, 2% of a hot reserve's instructions (callgrind).
NEW_BUYER = ("\\set buyer random(1, 1000000000)\n\\set id1 random(1000, 9999)\n\\set id2 random(100, 999)\n"
             "\\set id3 random(100000000000, 999999999999)\n")
RESERVE = ("SELECT reserve_hold({event}, {tier}, 1, 'b-:client_id-:buyer', 'a', '10000000-:id1-4:id2-8:id2-:id3',"
           " 's', NULL, {offer}, NULL, {reclaim});")
SCRIPTS = {
    "row": "UPDATE bench_row SET n = n + 1 WHERE id = 1;",
    "hot": NEW_BUYER
           + RESERVE.format(event="'{hot_event}'", tier="'{hot_tier}'", offer="NULL", reclaim="true"),
    # Best available (no seats named); {seated_event} and {seated_tier} name this client count's own tier;
    # measured right after the hot tier, so that the ratio compares neighbouring measurements.
    "seated": NEW_BUYER
              + RESERVE.format(event="'{seated_event}'", tier="'{seated_tier}'", offer="NULL", reclaim="true").replace(
                  ", 1, ", f", {SEATED_QUANTITY}, ", 1),
    "hot_quota": NEW_BUYER
                 + RESERVE.format(event="'{quota_event}'", tier="'{quota_tier}'", offer="NULL", reclaim="true"),
    "hot_offer": NEW_BUYER
                 + RESERVE.format(event="'{hot_event}'", tier="'{hot_tier}'", offer="'HOT'", reclaim="true"),
    "spread": NEW_BUYER + "\\set n random(1, " + str(SPREAD_TIERS) + ")\n"
              + RESERVE.format(event="(SELECT event_id FROM bench_tiers WHERE n = :n)",
                               tier="(SELECT tier_id FROM bench_tiers WHERE n = :n)", offer="NULL",
                               reclaim="true"),
}


def new_event(tiers: list[dict[str, Any]], quotas: list[dict[str, Any]] | None = None) -> tuple[str, list[str]]:
    """An event created through the domain, as POST /events does: (event_id, tier ids)."""
    event = create_event(EventCreate.model_validate({
        "name": "bench", "starts_at": "2030-01-01T00:00:00Z", "tiers": tiers, "quotas": quotas or []}))
    return str(event.event_id), [str(tier.tier_id) for tier in event.tiers]


def prepare(url: str) -> dict[str, str]:
    os.environ["DATABASE_URL"] = url
    hot_event, (hot_tier,) = new_event([{"name": "GA", "capacity": CAPACITY, "price": 100}])
    create_offer(hot_event, OfferCreate.model_validate({"code": "HOT", "percent_off": 10, "max_claims": CAPACITY}))
    quota_event, (quota_tier, _) = new_event(
        [{"name": "GA", "capacity": CAPACITY, "price": 100}, {"name": "VIP", "capacity": 1000, "price": 900}],
        [{"name": "Hall", "capacity": CAPACITY, "tiers": ["GA", "VIP"]}])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_row (id int PRIMARY KEY, n bigint)")
        conn.execute("INSERT INTO bench_row VALUES (1, 0) ON CONFLICT DO NOTHING")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_tiers (n int PRIMARY KEY, event_id uuid, tier_id uuid)")
        conn.execute("TRUNCATE bench_tiers")
        for n in range(1, SPREAD_TIERS + 1):
            event_id, (tier_id,) = new_event([{"name": "GA", "capacity": CAPACITY, "price": 100}])
            conn.execute("INSERT INTO bench_tiers VALUES (%s, %s, %s)", (n, event_id, tier_id))
    analyze(url)
    return {"hot_event": hot_event, "hot_tier": hot_tier, "quota_event": quota_event, "quota_tier": quota_tier}


def analyze(url: str) -> None:
    """Statistics for every table, as autovacuum keeps them in production."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def seated_tier() -> tuple[str, str]:
    """A fresh assigned-seating tier of SEATED_SEATS seats in rows of SEATED_ROW, analyzed: (event_id, tier_id)."""
    rows = [{"row": f"R{n}", "seats": SEATED_ROW} for n in range(1, SEATED_SEATS // SEATED_ROW + 1)]
    event_id, (tier_id,) = new_event([{"name": "Stadium", "seating": "assigned", "price": 100, "rows": rows}])
    analyze(os.environ["DATABASE_URL"])
    return event_id, tier_id


def run_pgbench(url: str, script: Path, clients: int, seconds: int, transactions: int | None = None) -> float:
    """Transactions per second over `seconds`, or over `transactions` per client when given (failed
    transactions are an error: the run would be meaningless)."""
    length = ["-t", str(transactions)] if transactions else ["-T", str(seconds)]
    completed = subprocess.run(
        [str(bin_dir() / "pgbench"), "-n", "-M", "simple", "-c", str(clients), "-j", str(min(clients, 4)),
         *length, "-f", str(script), url],
        capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"pgbench failed ({completed.returncode}): {completed.stderr[-2000:]}")
    failed = re.search(r"number of failed transactions: (\d+)", completed.stdout)
    if failed and int(failed.group(1)):
        raise RuntimeError(f"pgbench: {failed.group(0)}\n{completed.stdout}")
    match = re.search(r"tps = ([\d.]+)", completed.stdout)
    assert match is not None, completed.stdout
    return float(match.group(1))


def seats_left(url: str, tier_id: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM seats WHERE tier_id = %s AND reservation_id IS NULL",
                           (tier_id,)).fetchone()
    assert row is not None
    return int(row[0])


def run_buyers(buyer: Callable[[int], None], count: int) -> float:
    """Runs buyer(0) ... buyer(count - 1) on threads of their own at once; returns the seconds until all ended."""
    started = time.monotonic()
    threads = [threading.Thread(target=buyer, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


# reserve_hold's answer for a new hold is its values, with answer None.
HELD = {"outcome": "held"}


def reserve(conn: psycopg.Connection[Any], event_id: str, tier_id: str, quantity: int, buyer: str,
            seats: list[str] | None = None) -> ReserveAnswer:
    """One reserve as the domain asks for it (tickets/domain/reservations.py): the record in binary."""
    row = conn.execute("SELECT reserve_hold(%s, %s, %s, %s, 'a', %s, 's', NULL, NULL, %s)",
                       (event_id, tier_id, quantity, buyer, uuid.uuid4(), seats), binary=True).fetchone()
    assert row is not None
    return ReserveAnswer(*row[0])


def sellout(url: str) -> dict[str, Any]:
    """SELLOUT_CLIENTS buyers on one tier of SELLOUT_SEATS seats, 1-4 seats each, until it is sold out."""
    event_id, (tier_id,) = new_event([{"name": "GA", "capacity": SELLOUT_SEATS, "price": 100}])
    calls: list[tuple[float, float, int, str, int]] = []  # start, end, quantity, outcome, available_seats
    lock = threading.Lock()
    done = threading.Event()

    def buyer(number: int) -> None:
        rng = random.Random(number)  # noqa: S311 - quantities, not secrets
        mine: list[tuple[float, float, int, str, int]] = []
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
            while not done.is_set():
                quantity = rng.randint(1, 4)
                start = time.monotonic()
                try:
                    result = reserve(conn, event_id, tier_id, quantity, f"s-{number}-{len(mine)}").answer or HELD
                except psycopg.errors.LockNotAvailable:
                    # The function's lock_timeout: the API answers 503 with Retry-After, the buyer retries.
                    mine.append((start, time.monotonic(), quantity, "unavailable", -1))
                    continue
                end = time.monotonic()
                mine.append((start, end, quantity, result["outcome"], int(result.get("available_seats", -1))))
                if result["outcome"] == "sold_out":
                    done.set()
        with lock:
            calls.extend(mine)

    seconds = run_buyers(buyer, SELLOUT_CLIENTS)
    sold = sum(quantity for _, _, quantity, outcome, _ in calls if outcome == "held")
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT seats_taken FROM tier_inventory WHERE tier_id = %s", (tier_id,)).fetchone()
        in_db = conn.execute("SELECT coalesce(sum(quantity), 0) FROM reservations WHERE tier_id = %s",
                             (tier_id,)).fetchone()
    assert row is not None and in_db is not None
    last_success_start = max((start for start, _, _, outcome, _ in calls if outcome == "held"), default=0.0)
    false_refusals = sum(
        1 for start, end, quantity, outcome, available in calls
        if (outcome == "insufficient_inventory" and available >= quantity)
        or (outcome == "sold_out" and end < last_success_start))
    return {"capacity": SELLOUT_SEATS, "clients": SELLOUT_CLIENTS, "seconds": round(seconds, 2),
            "reserves": len(calls), "seats_sold": sold, "seats_in_database": int(in_db[0]),
            "counter_seats_taken": int(row[0]), "seats_oversold": max(0, int(in_db[0]) - SELLOUT_SEATS),
            "false_refusals": false_refusals,
            "lock_timeouts": sum(1 for *_, outcome, _ in calls if outcome == "unavailable")}


def storm(url: str) -> dict[str, Any]:
    """STORM_CLIENTS buyers asking for 1-2 adjacent seats of row A until none of it is left."""
    event_id, (tier_id,) = new_event([{"name": "Stalls", "seating": "assigned", "price": 100,
                                       "rows": [{"row": "A", "seats": STORM_ROW}, {"row": "B", "seats": STORM_ROW}]}])
    outcomes: list[str] = []
    won: list[list[str]] = []
    lock = threading.Lock()

    def buyer(number: int) -> None:
        rng = random.Random(number)  # noqa: S311 - seat choices, not secrets
        mine: list[str] = []
        mine_won: list[list[str]] = []
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
            while True:
                free = conn.execute("SELECT count(*) FROM seats WHERE tier_id = %s AND row_label = 'A'"
                                    " AND reservation_id IS NULL", (tier_id,)).fetchone()
                if free is None or free[0] == 0:
                    break
                first = rng.randint(1, STORM_ROW)
                labels = [f"A-{n}" for n in range(first, min(first + rng.randint(1, 2), STORM_ROW + 1))]
                answer = reserve(conn, event_id, tier_id, len(labels), f"storm-{number}-{len(mine)}", labels)
                mine.append((answer.answer or HELD)["outcome"])
                if answer.answer is None and answer.seats is not None:
                    mine_won.append(answer.seats)
        with lock:
            outcomes.extend(mine)
            won.extend(mine_won)

    seconds = run_buyers(buyer, STORM_CLIENTS)
    with psycopg.connect(url) as conn:
        twice = conn.execute(
            "SELECT count(*) FROM (SELECT label FROM reservations r, unnest(r.seats) AS label"
            " WHERE r.tier_id = %s AND r.status IN ('held', 'confirmed') GROUP BY label HAVING count(*) > 1) d",
            (tier_id,)).fetchone()
        owned = conn.execute("SELECT count(*) FROM seats WHERE tier_id = %s AND reservation_id IS NOT NULL",
                             (tier_id,)).fetchone()
    assert twice is not None and owned is not None
    answered = [seat for seats in won for seat in seats]
    return {"clients": STORM_CLIENTS, "row_seats": STORM_ROW, "seconds": round(seconds, 2),
            "requests": len(outcomes), "holds": outcomes.count("held"),
            "seats_unavailable": outcomes.count("seats_unavailable"),
            "other_refusals": len(outcomes) - outcomes.count("held") - outcomes.count("seats_unavailable"),
            "seats_held": len(answered), "seats_in_database": int(owned[0]),
            "double_bookings": int(twice[0]) + len(answered) - len(set(answered))}


# Each ratio: (numerator shape, reference shape), taken within one round.
RATIOS = {"hot/spread": ("hot", "spread"), "quota/spread": ("hot_quota", "spread"), "offer/hot": ("hot_offer", "hot"),
          "seated/hot": ("seated", "hot"), "hot/row": ("hot", "row")}


def ratio_summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def main() -> int:
    seconds = int(os.environ.get("BENCH_SECONDS", "8"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    client_counts = [int(n) for n in os.environ.get("BENCH_CLIENTS", "1,4,16,64").split(",")]
    given = os.environ.get("DATABASE_URL")
    # A throwaway cluster unless DATABASE_URL is set; durable (fsync on): commits cost what they cost.
    with LocalBackends(load_template(), database_url=given, dynamodb=False) as backends, \
            tempfile.TemporaryDirectory(prefix="tickets-bench-") as workdir:
        url = backends.database_url
        ids = prepare(url)
        scripts = {}
        for shape, text in SCRIPTS.items():
            scripts[shape] = Path(workdir) / f"{shape}.sql"
            if shape != "seated":
                scripts[shape].write_text(text.format(**ids) + "\n", encoding="utf-8")
        print(f"{seconds} s per point, {rounds} rounds, {os.cpu_count()} CPUs,"
              f" {'DATABASE_URL' if given else 'throwaway cluster'}; transactions per second")
        header = (f"{'round':>5} {'clients':>7} {'row':>7} {'hot':>7} {'hot_quota':>9} {'hot_offer':>9} {'spread':>7}"
                  f" {'seated':>7} " + " ".join(f"{name:>{max(len(name), 7)}}" for name in RATIOS))
        print(header)
        rounds_of: dict[str, list[dict[str, float]]] = {}
        seated_left: dict[str, int] = {}
        # Rounds over all client counts, not one count's points back to back: the machine's noise
        # (another tenant, the fsync latency) then falls on every count alike, and each ratio pairs
        # neighbouring measurements of one round.
        for round_number in range(1, rounds + 1):
            for clients in client_counts:
                seated_event, seated_tier_id = seated_tier()
                scripts["seated"].write_text(SCRIPTS["seated"].format(seated_event=seated_event,
                                                                      seated_tier=seated_tier_id) + "\n",
                                             encoding="utf-8")
                seated_transactions = max(1, int(SEATED_SEATS * SEATED_FILL) // SEATED_QUANTITY // clients)
                point = {shape: run_pgbench(url, script, clients, seconds,
                                            seated_transactions if shape == "seated" else None)
                         for shape, script in scripts.items()}
                left = seats_left(url, seated_tier_id)
                seated_left[str(clients)] = min(left, seated_left.get(str(clients), left))
                rounds_of.setdefault(str(clients), []).append(point)
                print(f"{round_number:>5} {clients:>7} {point['row']:>7.0f} {point['hot']:>7.0f}"
                      f" {point['hot_quota']:>9.0f} {point['hot_offer']:>9.0f} {point['spread']:>7.0f}"
                      f" {point['seated']:>7.0f} "
                      + " ".join(f"{point[top] / point[bottom]:>{max(len(name), 7)}.2f}"
                                 for name, (top, bottom) in RATIOS.items()), flush=True)
        figures = {count: {shape: statistics.median(point[shape] for point in points) for shape in SCRIPTS}
                   for count, points in rounds_of.items()}
        ratios = {count: {name: ratio_summary([point[top] / point[bottom] for point in points])
                          for name, (top, bottom) in RATIOS.items()}
                  for count, points in rounds_of.items()}
        print(f"median of {rounds} rounds (lowest-highest):")
        print(f"{'clients':>7} " + " ".join(f"{name:>16}" for name in RATIOS))
        for count, summary in ratios.items():
            print(f"{count:>7} " + " ".join(f"{s['median']:>5.2f} ({s['min']:.2f}-{s['max']:.2f})"
                                              for s in summary.values()))
        if any(left < SEATED_QUANTITY for left in seated_left.values()):
            print(f"WARNING: a seated tier sold out during its run (seats left: {seated_left}); its figure is not"
                  " a reserve rate: lower BENCH_SECONDS or raise SEATED_SEATS")
        result = sellout(url)
        print("sell-out: " + ", ".join(f"{name} {value}" for name, value in result.items()))
        stormed = storm(url)
        print("named-seat storm: " + ", ".join(f"{name} {value}" for name, value in stormed.items()))
    RESULTS.parent.mkdir(exist_ok=True)
    # "clients": each shape's median over the rounds; "ratios": the median, lowest and highest of each
    # round's ratio; "rounds": every point.
    RESULTS.write_text(json.dumps({"rounds_measured": rounds, "seconds_per_point": seconds,
                                   "clients": figures, "ratios": ratios, "rounds": rounds_of, "seated": {
        "seats": SEATED_SEATS, "row": SEATED_ROW, "quantity": SEATED_QUANTITY, "fill": SEATED_FILL,
        "seats_left": seated_left,
        "seated_over_hot": {clients: summary["seated/hot"]["median"] for clients, summary in ratios.items()}},
        "sellout": result, "storm": stormed}, indent=2) + "\n", encoding="utf-8")
    print(f"written to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")
    consistent = (result["seats_sold"] == result["capacity"] == result["seats_in_database"]
                  == result["counter_seats_taken"] and result["false_refusals"] == 0)
    print("sell-out consistent" if consistent else "sell-out INCONSISTENT")
    storm_clean = (stormed["double_bookings"] == 0 and stormed["other_refusals"] == 0
                   and stormed["seats_held"] == stormed["seats_in_database"] == STORM_ROW)
    print("named-seat storm clean" if storm_clean else "named-seat storm INCONSISTENT")
    return 0 if consistent and storm_clean else 1


if __name__ == "__main__":
    sys.exit(main())
