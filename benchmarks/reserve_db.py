"""How many reservations a second the database takes on ONE hot tier: the ceiling the API sits under.

    make bench-db                      # a throwaway cluster; or DATABASE_URL=... to measure yours
    BENCH_SECONDS=20 BENCH_CLIENTS=1,8,32 make bench-db

Every reserve of one tier locks that tier's inventory row, so this is the number that bounds a
sell-out of one hot event, whatever the Lambda concurrency. pgbench drives the same SQL function
the reserve handler calls (reserve_seats, one statement, autocommit, simple protocol as behind
RDS Proxy), each call a distinct buyer, on a tier large enough never to sell out. It prints
reservations per second and latency per client count; the figures are the machine's, not AWS's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from localstage.postgres import bin_dir
from localstage.runtime import LocalBackends
from localstage.template import load_template
from tickets.domain.events import create_event
from tickets.models import EventCreate

CAPACITY = 1_000_000

# One reservation of one seat by a new buyer; pgbench's random() makes each buyer distinct.
PGBENCH_SCRIPT = """\
\\set buyer random(1, 1000000000)
SELECT reserve_seats('{event}'::uuid, '{tier}'::uuid, 1, 'bench-' || :client_id || '-' || :buyer, gen_random_uuid());
"""


def create_hot_event(url: str) -> tuple[str, str]:
    """An event of one tier too large to sell out, created through the domain as POST /events does."""
    os.environ["DATABASE_URL"] = url
    event = create_event(EventCreate.model_validate({
        "name": "bench", "starts_at": "2030-01-01T00:00:00Z",
        "tiers": [{"name": "GA", "capacity": CAPACITY, "price": 100}]}))
    return str(event.event_id), str(event.tiers[0].tier_id)


def run_pgbench(url: str, script: Path, clients: int, seconds: int) -> tuple[float, float, int]:
    """(transactions per second, mean latency ms, failed transactions)."""
    completed = subprocess.run(
        [str(bin_dir() / "pgbench"), "-n", "-M", "simple", "-c", str(clients), "-j", str(min(clients, 4)),
         "-T", str(seconds), "-f", str(script), url],
        capture_output=True, text=True, check=True)
    tps = float(re.search(r"tps = ([\d.]+)", completed.stdout).group(1))  # type: ignore[union-attr]
    latency = float(re.search(r"latency average = ([\d.]+) ms", completed.stdout).group(1))  # type: ignore[union-attr]
    failed = re.search(r"number of failed transactions: (\d+)", completed.stdout)
    return tps, latency, int(failed.group(1)) if failed else 0


def main() -> int:
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    client_counts = [int(n) for n in os.environ.get("BENCH_CLIENTS", "1,4,16,64").split(",")]
    given = os.environ.get("DATABASE_URL")
    # A throwaway cluster unless DATABASE_URL is set; fsync on: commits cost what they cost.
    with LocalBackends(load_template(), database_url=given, dynamodb=False) as backends, \
            tempfile.TemporaryDirectory(prefix="tickets-bench-") as workdir:
        url = backends.database_url
        event_id, tier_id = create_hot_event(url)
        script = Path(workdir) / "reserve.sql"
        script.write_text(PGBENCH_SCRIPT.format(event=event_id, tier=tier_id), encoding="utf-8")
        print(f"reserve_seats on one tier, {seconds} s per row, {os.cpu_count()} CPUs, "
              f"{'DATABASE_URL' if given else 'throwaway cluster'}")
        print(f"{'clients':>8} {'reservations/s':>15} {'mean latency ms':>16} {'failed':>7}")
        for clients in client_counts:
            tps, latency, failed = run_pgbench(url, script, clients, seconds)
            print(f"{clients:>8} {tps:>15.0f} {latency:>16.2f} {failed:>7}", flush=True)
        with psycopg.connect(url) as conn:
            held, taken = conn.execute(
                "SELECT (SELECT coalesce(sum(quantity), 0) FROM reservations WHERE tier_id = %s AND status = 'held'),"
                " (SELECT seats_taken FROM tier_inventory WHERE tier_id = %s)", (tier_id, tier_id)).fetchone()  # type: ignore[misc]
        print(f"held seats {held}, inventory seats_taken {taken}: {'consistent' if held == taken else 'MISMATCH'}")
        return 0 if held == taken else 1


if __name__ == "__main__":
    sys.exit(main())
