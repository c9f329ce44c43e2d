"""Best available on an assigned-seating tier while holds lapse, against the same tier while none do.

    make bench-lapses                  # a durable throwaway cluster; or DATABASE_URL=... to measure yours
    BENCH_SECONDS=3 BENCH_ROUNDS=2 BENCH_CLIENTS=16,64 LAPSE_MS=20 make bench-lapses

An on-sale's buyers abandon holds, which lapse while others buy. A lapsed hold's seats are free at
once, but not in the free-seat index that best available reads first, so a reserve that finds
lapsed holds on its tier asks the domain to reclaim them and then asks again (05_seats.sql,
seats_claim_labels). pgbench drives reserve_hold as the domain does (tickets/domain/reservations.py):
with p_reclaim, and on a "reclaim" answer reclaim_lapsed_for_tier, then reserve_hold once more
without it. Per client count and round, two points on fresh tiers of SEATED_SEATS seats holding
PRELOAD holds (some minutes into an on-sale): `steady`, nobody abandons; `lapsing`, a thread lapses
one live hold every LAPSE_MS (one of the 200 oldest, as abandoned holds lapse in the order they were
made; as many at once as are due, so that a thread starved of CPU keeps the rate). lapsing/steady
is the ratio. Before the reclaim answer, best available chose around lapsed holds in a search over
every free seat of the tier: 0.09-0.17 of the steady figure (README).
Writes benchmarks/results/bench-lapses.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from benchmarks.reserve_db import NEW_BUYER, RESERVE, SEATED_QUANTITY, prepare, ratio_summary, run_pgbench, seated_tier
from benchmarks.reserve_db import reserve as reserve_once
from localstage.runtime import LocalBackends
from localstage.template import load_template

RESULTS = Path(__file__).parent / "results" / "bench-lapses.json"
PRELOAD = 1000


def reserve(reclaim: str) -> str:
    """bench-db's best-available reserve (SEATED_QUANTITY seats, no offer, no seats named) with
    p_reclaim, as an expression: {event} and {tier} left to fill."""
    return RESERVE.format(event="'{event}'", tier="'{tier}'", offer="NULL", reclaim=reclaim).replace(
        ", 1, ", f", {SEATED_QUANTITY}, ", 1).removeprefix("SELECT ").removesuffix(";")


# The domain's protocol: ask with p_reclaim; told to reclaim, reclaim and ask once more without it.
SCRIPT = (NEW_BUYER
          + "SELECT coalesce((" + reserve("true") + ").answer->>'outcome' = 'reclaim', false)::int AS again \\gset\n"
          + "\\if :again\nSELECT reclaim_lapsed_for_tier('{tier}', NULL);\n"
          + "SELECT " + reserve("false") + ";\n\\endif\n")


def loaded_tier(url: str) -> tuple[str, str]:
    """A fresh seated tier with PRELOAD live holds, analyzed: (event_id, tier_id)."""
    event_id, tier_id = seated_tier()
    with psycopg.connect(url, autocommit=True) as conn:
        for number in range(PRELOAD):
            reserve_once(conn, event_id, tier_id, SEATED_QUANTITY, f"early-{number}")
        conn.execute("ANALYZE")
    return event_id, tier_id


def lapsing(url: str, tier_id: str, every_ms: float, stop: threading.Event, lapsed: list[int]) -> None:
    """Lapses one of the tier's 200 oldest live holds every `every_ms` until stopped: as many at a time
    as are due, so that a thread starved of CPU by 64 clients keeps the rate."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            due = int((time.monotonic() - started) * 1000 / every_ms) + 1 - lapsed[0]
            if due > 0:
                conn.execute("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE reservation_id IN"
                             " (SELECT reservation_id FROM reservations WHERE tier_id = %s AND status = 'held'"
                             "  AND expires_at > now() ORDER BY expires_at LIMIT %s OFFSET floor(random() * 200)::int)",
                             (tier_id, due))
                lapsed[0] += due
            stop.wait(every_ms / 1000)


def main() -> int:
    seconds = int(os.environ.get("BENCH_SECONDS", "3"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    client_counts = [int(n) for n in os.environ.get("BENCH_CLIENTS", "16,64").split(",")]
    every_ms = float(os.environ.get("LAPSE_MS", "20"))
    given = os.environ.get("DATABASE_URL")
    points: dict[str, list[dict[str, float]]] = {}
    with LocalBackends(load_template(), database_url=given, dynamodb=False) as backends, \
            tempfile.TemporaryDirectory(prefix="tickets-bench-") as workdir:
        url = backends.database_url
        prepare(url)
        script = Path(workdir) / "reserve.sql"
        print(f"{seconds} s per point, {rounds} rounds, a lapse every {every_ms:g} ms in `lapsing`;"
              " reserve attempts per second")
        print(f"{'round':>5} {'clients':>7} {'steady':>8} {'lapsing':>8} {'lapses':>7} {'lapsing/steady':>15}")
        for round_number in range(1, rounds + 1):
            for clients in client_counts:
                point: dict[str, float] = {}
                for shape in ("steady", "lapsing"):
                    event_id, tier_id = loaded_tier(url)
                    script.write_text(SCRIPT.format(event=event_id, tier=tier_id), encoding="utf-8")
                    stop, lapsed = threading.Event(), [0]
                    thread = threading.Thread(target=lapsing, args=(url, tier_id, every_ms, stop, lapsed))
                    if shape == "lapsing":
                        thread.start()
                    point[shape] = run_pgbench(url, script, clients, seconds)
                    stop.set()
                    if thread.is_alive():
                        thread.join()
                    point["lapses"] = lapsed[0]
                points.setdefault(str(clients), []).append(point)
                print(f"{round_number:>5} {clients:>7} {point['steady']:>8.0f} {point['lapsing']:>8.0f}"
                      f" {point['lapses']:>7.0f} {point['lapsing'] / point['steady']:>15.2f}", flush=True)
    ratios = {count: ratio_summary([p["lapsing"] / p["steady"] for p in rows]) for count, rows in points.items()}
    for count, summary in ratios.items():
        print(f"clients {count}: lapsing/steady {summary['median']:.2f} ({summary['min']:.2f}-{summary['max']:.2f}),"
              f" steady {statistics.median(p['steady'] for p in points[count]):.0f} a second")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"seconds_per_point": seconds, "lapse_every_ms": every_ms, "preload": PRELOAD,
                                   "ratios": ratios, "rounds": points}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
