"""Race for the last seat: N buyers reserve at the same instant, over and over; nothing may oversell.

Each iteration creates its own event (SEATS seats, default 1: "the last seat"), releases
CONCURRENT_REQUESTS threads from a barrier so that their reservations (QUANTITY seats each) hit
the API together, then checks through the API, and through the database when DATABASE_URL
answers, that no more than the capacity was held and that exactly min(SEATS // QUANTITY, N)
buyers won (never a refusal while seats were free). It cancels its holds and purges its event
(tests/support/purge_event.sql, when the database answers), and prints what happened.

    API_URL=http://127.0.0.1:3000 TICKETS_ADMIN_TOKEN=... CONCURRENT_REQUESTS=200 TEST_ITERATIONS=5 \\
        .venv/bin/python tests/race/race.py

Environment: API_URL (default: the local stage of `make dev`, from its stage.json),
TICKETS_ADMIN_TOKEN, DATABASE_URL (optional), CONCURRENT_REQUESTS (50), TEST_ITERATIONS (5),
SEATS (1), QUANTITY (1), REQUEST_TIMEOUT seconds (60), QUOTA (0; 1: the SEATS are a quota, a
"Hall", over a tier twice as large, so the quota is what binds), SEATED (0; 1: the tier has
assigned seats, row A of SEATS seats, and every buyer names the same seats A-1 to A-QUANTITY:
exactly one wins, the rest get 409 seats_unavailable naming them). Exit status: 0 when every iteration
passed, 1 on any oversell, unexpected answer or failed check, 2 on bad configuration.
See tests/race/README.md.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
PURGE_SQL = REPO_ROOT / "tests" / "support" / "purge_event.sql"
CONFLICT_CODES = ("sold_out", "insufficient_inventory")
SEATS_TAKEN = "seats_unavailable"
PRICE = 2500
PERCENTILES = (50, 90, 95, 99)


class ConfigError(Exception):
    pass


def _positive_int(name: str, default: int, maximum: int) -> int:
    raw = os.environ.get(name, "").strip() or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if not 1 <= value <= maximum:
        raise ConfigError(f"{name} must be between 1 and {maximum}, not {value}")
    return value


@dataclass(frozen=True)
class Config:
    api_url: str
    token: str
    database_url: str
    target: str
    concurrency: int
    iterations: int
    seats: int
    quantity: int
    timeout: float
    quota: bool = False
    seated: bool = False

    @classmethod
    def from_env(cls) -> Config:
        api_url = os.environ.get("API_URL", "").strip()
        token = os.environ.get("TICKETS_ADMIN_TOKEN", "").strip()
        database_url = os.environ.get("DATABASE_URL", "").strip()
        if api_url:
            target = "API_URL"
        else:
            stage_json = Path(os.environ.get("LOCAL_STAGE_DIR") or REPO_ROOT / ".local") / "stage.json"
            try:
                stage: dict[str, Any] = json.loads(stage_json.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise ConfigError(f"API_URL is not set and no local stage is running ({stage_json} is missing); "
                                  f"start one with `make dev`, or set API_URL and TICKETS_ADMIN_TOKEN") from None
            api_url = str(stage["base_url"])
            token = token or str(stage.get("token") or "")
            database_url = str(stage.get("database_url") or "")  # the database behind this stage
            target = f"local stage from {stage_json}"
        if not token:
            raise ConfigError(f"TICKETS_ADMIN_TOKEN is not set: the organizer token of {api_url} is needed")
        quantity = _positive_int("QUANTITY", 1, 100)
        seats = _positive_int("SEATS", 1, 1_000_000)
        try:
            timeout = float(os.environ.get("REQUEST_TIMEOUT", "").strip() or "60")
        except ValueError:
            raise ConfigError("REQUEST_TIMEOUT must be a number of seconds") from None
        return cls(api_url=api_url.rstrip("/"), token=token, database_url=database_url, target=target,
                   concurrency=_positive_int("CONCURRENT_REQUESTS", 50, 5000),
                   iterations=_positive_int("TEST_ITERATIONS", 5, 100_000),
                   seats=seats, quantity=quantity, timeout=timeout,
                   quota=os.environ.get("QUOTA", "0").strip() not in ("", "0"),
                   seated=_seated(seats, quantity))

    @property
    def expected_wins(self) -> int:
        if self.seated:  # every buyer names the same seats
            return 1
        return min(self.seats // self.quantity, self.concurrency)

    @property
    def named_seats(self) -> list[str]:
        """What each buyer asks for in the SEATED mode: A-1 to A-QUANTITY."""
        return [f"A-{n}" for n in range(1, self.quantity + 1)] if self.seated else []


def _seated(seats: int, quantity: int) -> bool:
    if os.environ.get("SEATED", "0").strip() in ("", "0"):
        return False
    if quantity > seats or seats > 1000:
        raise ConfigError("SEATED=1 needs QUANTITY <= SEATS <= 1000 (one row of seats)")
    return True


# ---------------------------------------------------------------------------------------------
# Answers and statistics.


@dataclass(frozen=True)
class Outcome:
    """One buyer's answer: kind is success (201), conflict (409 sold_out/insufficient_inventory) or other."""

    kind: str
    label: str  # "201", "409 sold_out", "503 unavailable", "connection ConnectTimeout", ...
    seconds: float
    reservation_id: str | None = None
    reservation_secret: str = ""
    available_seats: int | None = None
    detail: str = ""


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcomes: list[Outcome]) -> None:
        self.outcomes.extend(outcomes)

    def count(self, kind: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.kind == kind)

    def breakdown(self, kind: str) -> str:
        labels = Counter(outcome.label for outcome in self.outcomes if outcome.kind == kind)
        return ", ".join(f"{n} {label}" for label, n in labels.most_common())

    def latency(self) -> str:
        values = sorted(outcome.seconds * 1000 for outcome in self.outcomes)
        if not values:
            return "ms -"
        parts = [f"p{pct} {percentile(values, pct):.0f}" for pct in PERCENTILES]
        return "ms " + " ".join([*parts, f"max {values[-1]:.0f}"])

    def summary(self) -> str:
        conflicts, others = self.breakdown("conflict"), self.breakdown("other")
        return (f"{len(self.outcomes)} requests: {self.count('success')} succeeded (201), "
                f"{self.count('conflict')} conflicts (409{': ' + conflicts if conflicts else ''}), "
                f"{self.count('other')} other errors{' (' + others + ')' if others else ''}; {self.latency()}")


# ---------------------------------------------------------------------------------------------
# The API and the database.


class Api:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.session = requests.Session()

    def call(self, method: str, path: str, body: Any = None, *, admin: bool = False,
             secret: str | None = None) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if admin:
            headers["Authorization"] = f"Bearer {self.config.token}"
        if secret is not None:
            headers["X-Reservation-Secret"] = secret
        return self.session.request(method, self.config.api_url + path, headers=headers,
                                    data=None if body is None else json.dumps(body), timeout=self.config.timeout)

    def create_event(self, name: str) -> tuple[str, str]:
        tier: dict[str, Any] = {"name": "General", "capacity": self.config.seats * (2 if self.config.quota else 1),
                                "price": PRICE, "max_per_order": self.config.quantity}
        if self.config.seated:
            tier = {"name": "Stalls", "seating": "assigned", "rows": [{"row": "A", "seats": self.config.seats}],
                    "price": PRICE, "max_per_order": self.config.quantity}
        payload = {"name": name, "venue": "race script", "starts_at": "2031-06-01T19:00:00Z", "currency": "EUR",
                   "hold_seconds": 600, "tiers": [tier]}
        if self.config.quota:
            payload["quotas"] = [{"name": "Hall", "capacity": self.config.seats, "tiers": ["General"]}]
        response = self.call("POST", "/events", payload, admin=True)
        if response.status_code != 201:
            raise RuntimeError(f"POST /events answered {response.status_code}: {response.text[:300]}")
        event = response.json()
        return str(event["event_id"]), str(event["tiers"][0]["tier_id"])

    def available_seats(self, event_id: str) -> int:
        response = self.call("GET", f"/events/{event_id}/availability")
        if response.status_code != 200:
            raise RuntimeError(f"GET availability answered {response.status_code}: {response.text[:300]}")
        return int(response.json()["tiers"][0]["available_seats"])


class Database:
    """Checks and clean-up through psql, when DATABASE_URL answers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.psql = shutil.which("psql")
        self.reachable = bool(url and self.psql) and self._run("SELECT 1", {}).strip() == "1"

    def _run(self, sql: str | None, variables: dict[str, str], *, file: Path | None = None) -> str:
        assert self.psql is not None
        command = [self.psql, self.url, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"]
        for name, value in variables.items():
            command += ["-v", f"{name}={value}"]
        if file is not None:
            command += ["-f", str(file)]
        try:
            done = subprocess.run(command, input=sql or "", capture_output=True, text=True, timeout=60,
                                  env={**os.environ, "PGCONNECT_TIMEOUT": "5"})
        except subprocess.TimeoutExpired:
            return ""
        if done.returncode != 0:
            raise RuntimeError(f"psql failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def event_seats(self, event_id: str) -> tuple[int, int, int, int] | None:
        """(capacity, seats_taken, held + confirmed seats, held + confirmed reservations) of the event's
        binding counter: its tier's, or the quota over it when the quota is smaller."""
        out = self._run("""
            SELECT c.capacity, c.capacity - (SELECT sum(free) FROM counter_shares s WHERE s.counter_id = c.counter_id),
                   (SELECT coalesce(sum(r.quantity) FILTER (WHERE r.status = 'confirmed'
                        OR (r.status = 'held' AND r.expires_at > clock_timestamp())), 0)
                    FROM reservations r WHERE r.event_id = :'event_id'),
                   (SELECT count(*) FROM reservations r
                    WHERE r.event_id = :'event_id' AND r.status IN ('held', 'confirmed'))
            FROM counters c
            WHERE c.counter_id IN (SELECT tier_id FROM tiers WHERE event_id = :'event_id'
                                   UNION ALL SELECT quota_id FROM quotas WHERE event_id = :'event_id')
            ORDER BY c.capacity LIMIT 1;
            """, {"event_id": event_id}).strip()
        if not out:
            return None
        capacity, taken, seats, rows = (int(part) for part in out.split("\t"))
        return capacity, taken, seats, rows

    def seats_twice(self, event_id: str) -> tuple[int, int]:
        """(seats held or sold by the event's live reservations as they list them, seats listed twice)."""
        out = self._run("""
            SELECT count(*), count(*) - count(DISTINCT label)
            FROM reservations r, unnest(r.seats) AS label
            WHERE r.event_id = :'event_id' AND (r.status = 'confirmed'
                  OR (r.status = 'held' AND r.expires_at > clock_timestamp()));
            """, {"event_id": event_id}).strip()
        listed, twice = (int(part) for part in out.split("\t"))
        return listed, twice

    def purge(self, event_id: str) -> None:
        self._run(None, {"event_id": event_id}, file=PURGE_SQL)


# ---------------------------------------------------------------------------------------------
# One iteration.


def classify(response: requests.Response, seconds: float, config: Config, event_id: str) -> Outcome:
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        return Outcome("other", f"{status} not_json", seconds, detail=response.text[:200])
    error = body.get("error") if isinstance(body, dict) else None
    if status == 201 and isinstance(body, dict):
        reservation_id = body.get("reservation_id")
        if (isinstance(reservation_id, str) and body.get("status") == "held"
                and body.get("quantity") == config.quantity and body.get("event_id") == event_id
                and (not config.seated or body.get("seats") == config.named_seats)):
            return Outcome("success", "201", seconds, reservation_id=reservation_id,
                           reservation_secret=str(body.get("reservation_secret", "")))
        return Outcome("other", "201 unexpected_body", seconds, detail=json.dumps(body)[:300])
    if isinstance(error, dict):
        code = str(error.get("code"))
        message = error.get("message")
        if status == 409 and code == SEATS_TAKEN and config.seated:
            unavailable = error.get("unavailable_seats")
            if (not isinstance(unavailable, list) or not unavailable or not set(unavailable) <= set(config.named_seats)
                    or not isinstance(message, str) or not message.strip()):
                return Outcome("other", f"409 {code} inconsistent", seconds, detail=json.dumps(body)[:300])
            return Outcome("conflict", code, seconds)
        if status == 409 and code in CONFLICT_CODES:
            available = error.get("available_seats")
            expected_ok = (available == 0 if code == "sold_out"
                           else isinstance(available, int) and 0 < available < config.quantity)
            if not expected_ok or not isinstance(message, str) or not message.strip():
                return Outcome("other", f"409 {code} inconsistent", seconds, detail=json.dumps(body)[:300])
            return Outcome("conflict", f"{code}", seconds, available_seats=available)
        return Outcome("other", f"{status} {code}", seconds, detail=str(message)[:200])
    return Outcome("other", f"{status} no_error_body", seconds, detail=json.dumps(body)[:200])


def fire(config: Config, run_id: str, iteration: int, event_id: str, tier_id: str) -> list[Outcome]:
    """CONCURRENT_REQUESTS threads, one connection each, released together by a barrier."""
    n = config.concurrency
    barrier = threading.Barrier(n)
    outcomes: list[Outcome | None] = [None] * n
    url = f"{config.api_url}/events/{event_id}/reservations"
    body = json.dumps({"seats": config.named_seats, "tier_id": tier_id} if config.seated
                      else {"quantity": config.quantity, "tier_id": tier_id})

    def buyer(i: int) -> None:
        headers = {"Content-Type": "application/json",
                   "Idempotency-Key": f"{run_id}-{iteration}-{i}",
                   "X-Device-Id": f"{run_id}-{iteration}-buyer-{i}"}
        with requests.Session() as session:
            try:
                barrier.wait(timeout=config.timeout)
            except threading.BrokenBarrierError:
                outcomes[i] = Outcome("other", "client barrier_broken", 0.0)
                return
            started = time.perf_counter()
            try:
                response = session.post(url, data=body, headers=headers, timeout=config.timeout)
            except requests.RequestException as exc:
                outcomes[i] = Outcome("other", f"connection {type(exc).__name__}", time.perf_counter() - started,
                                      detail=str(exc)[:200])
                return
            outcomes[i] = classify(response, time.perf_counter() - started, config, event_id)

    threads = [threading.Thread(target=buyer, args=(i,), name=f"buyer-{i}", daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(config.timeout * 2 + 10)
    return [outcome or Outcome("other", "client no_answer", config.timeout) for outcome in outcomes]


def run_iteration(config: Config, api: Api, db: Database, run_id: str,
                  iteration: int) -> tuple[list[Outcome], list[str]]:
    """The outcomes and the failed checks (empty: the iteration passed)."""
    failures: list[str] = []
    event_id, tier_id = api.create_event(f"{run_id}-{iteration}")
    holds: list[tuple[str, str]] = []  # (reservation_id, reservation_secret)
    try:
        outcomes = fire(config, run_id, iteration, event_id, tier_id)
        holds = [(o.reservation_id, o.reservation_secret) for o in outcomes
                 if o.kind == "success" and o.reservation_id]
        wins, held_seats = len(holds), len(holds) * config.quantity
        if held_seats > config.seats:
            failures.append(f"OVERSOLD: {wins} holds of {config.quantity} = {held_seats} seats, "
                            f"capacity {config.seats}")
        if wins != config.expected_wins:
            failures.append(f"{wins} buyers won, expected exactly {config.expected_wins} "
                            f"(min({config.seats} // {config.quantity}, {config.concurrency}))")
        if len(set(holds)) != wins:
            failures.append("the same reservation id was handed out twice")
        others = [o for o in outcomes if o.kind == "other"]
        if others:
            failures.append(f"{len(others)} unexpected answers, e.g. {others[0].label}: {others[0].detail}")

        available = api.available_seats(event_id)
        if available != config.seats - held_seats:
            failures.append(f"availability reads {available}, expected {config.seats} - {held_seats}")
        # Seats only get taken during the round, so what is free at the end was free all along:
        # no buyer may have been told sold_out, or fewer seats than that, meanwhile.
        told_sold_out = sum(1 for o in outcomes if o.kind == "conflict" and o.label == "sold_out")
        if available > 0 and told_sold_out:
            failures.append(f"{told_sold_out} buyers were told sold_out while {available} seat(s) stayed free")
        understated = [o.available_seats or 0 for o in outcomes
                       if o.label == "insufficient_inventory" and (o.available_seats or 0) < available]
        if understated:
            failures.append(f"{len(understated)} buyers were told only {min(understated)} seat(s) were left "
                            f"while {available} stayed free")
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda hold: reservation_status(api, *hold), holds))
        if any(status != "200 held" for status in statuses):
            failures.append(f"holds read back: {dict(Counter(statuses))}, expected all 200 held")
        if db.reachable:
            found = db.event_seats(event_id)
            if found is None:
                failures.append(f"event {event_id} is not in the database at DATABASE_URL: "
                                "is it the one behind API_URL?")
            else:
                capacity, taken, seats, rows = found
                if seats > capacity or taken > capacity:
                    failures.append(f"OVERSOLD in the database: {seats} seats held or sold, seats_taken {taken}, "
                                    f"capacity {capacity}")
                if (seats, taken, rows) != (held_seats, held_seats, wins):
                    failures.append(f"database: {seats} seats in {rows} live reservations, seats_taken {taken}; "
                                    f"expected {held_seats} seats in {wins} reservations")
                if seats != config.seats - available:
                    failures.append(f"database: held + confirmed {seats} != capacity - available "
                                    f"{config.seats - available}")
            if config.seated:
                listed, twice = db.seats_twice(event_id)
                if twice or listed != held_seats:
                    failures.append(f"SEAT BOOKED TWICE or lost: live reservations list {listed} seats, "
                                    f"{twice} of them twice; expected {held_seats}, none twice")
    finally:
        failures += clean_up(config, api, db, event_id, holds)
    return outcomes, failures


def reservation_status(api: Api, reservation_id: str, secret: str) -> str:
    response = api.call("GET", f"/reservations/{reservation_id}", secret=secret)
    try:
        return f"{response.status_code} {response.json().get('status')}"
    except ValueError:
        return f"{response.status_code} not_json"


def clean_up(config: Config, api: Api, db: Database, event_id: str, holds: list[tuple[str, str]]) -> list[str]:
    """Cancels the holds (their seats come back at once) and purges the event when the database answers."""
    failures: list[str] = []

    def cancel(hold: tuple[str, str]) -> str:
        reservation_id, secret = hold
        response = api.call("DELETE", f"/reservations/{reservation_id}", secret=secret)
        try:
            return f"{response.status_code} {response.json().get('status')}"
        except ValueError:
            return f"{response.status_code} not_json"

    try:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(cancel, holds))
        if any(answer != "200 cancelled" for answer in answers):
            failures.append(f"cancelling the holds: {dict(Counter(answers))}, expected all 200 cancelled")
        available = api.available_seats(event_id)
        if available != config.seats:
            failures.append(f"after cancelling every hold, availability reads {available}, expected {config.seats}")
    except (requests.RequestException, RuntimeError) as exc:
        failures.append(f"clean-up through the API failed: {exc}")
    if db.reachable:
        try:
            db.purge(event_id)
        except RuntimeError as exc:
            failures.append(f"purging event {event_id}: {exc}")
    return failures


# ---------------------------------------------------------------------------------------------


def main() -> int:
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"race: {exc}", file=sys.stderr)
        return 2
    api = Api(config)
    db = Database(config.database_url)
    run_id = f"race-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    db_note = "on" if db.reachable else ("off (DATABASE_URL does not answer or psql is missing)"
                                        if config.database_url else "off (no DATABASE_URL)")
    print(f"race: {config.api_url} ({config.target}); run {run_id}\n"
          f"      {config.concurrency} simultaneous requests x {config.iterations} iterations; {config.seats} seat(s), "
          f"{config.quantity} per request{' (the same named seats)' if config.seated else ''}: "
          f"expect {config.expected_wins} win(s) per iteration; "
          f"database checks {db_note}", flush=True)
    try:
        health = api.call("GET", "/health")
    except requests.RequestException as exc:
        print(f"race: GET {config.api_url}/health failed: {exc}", file=sys.stderr)
        return 1
    if health.status_code != 200:
        print(f"race: GET /health answered {health.status_code}: {health.text[:300]}", file=sys.stderr)
        return 1

    overall = Tally()
    failed_iterations = 0
    started = time.monotonic()
    for iteration in range(1, config.iterations + 1):
        iteration_started = time.monotonic()
        aborted = False
        try:
            outcomes, failures = run_iteration(config, api, db, run_id, iteration)
        except (requests.RequestException, RuntimeError) as exc:
            outcomes, failures = [], [f"iteration aborted: {exc}"]
            aborted = True
        tally = Tally(outcomes)
        overall.add(outcomes)
        verdict = "ok" if not failures else "FAILED"
        print(f"iteration {iteration}/{config.iterations}: {tally.summary()}; "
              f"{time.monotonic() - iteration_started:.1f} s; {verdict}", flush=True)
        for failure in failures:
            print(f"  - {failure}", flush=True)
        failed_iterations += bool(failures)
        if aborted:
            print("  (no further iterations: the stage cannot run one)", flush=True)
            break
    print(f"overall: {overall.summary()}; {time.monotonic() - started:.1f} s")
    if failed_iterations:
        print(f"RESULT: FAILED ({failed_iterations} of {config.iterations} iterations)")
        return 1
    print(f"RESULT: PASS (no oversell, exactly {config.expected_wins} win(s) in each of "
          f"{config.iterations} iterations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
