"""The local stage end to end: `python -m localstage` as a subprocess, driven over real sockets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import requests

from localstage.lambda_runtime import ROOT
from localstage.sample_events import SAMPLES
from localstage.seed import DEMO_EVENT_ID
from localstage.template import load_template
from tests.e2e.stage_process import (
    ADMIN_TOKEN,
    StageProcess,
    new_state_dir,
    postgres_pids,
    remove_state_dir,
    stage_env,
)

pytestmark = pytest.mark.stage

ORGANIZER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Stages:
    """The module's stage; a test may stop it and start another on the same state directory."""

    def __init__(self) -> None:
        self.directory = new_state_dir()
        self.current = StageProcess(self.directory)
        self.all: list[StageProcess] = []

    def start(self) -> StageProcess:
        self.current = StageProcess(self.directory)
        self.all.append(self.current)
        return self.current.start()

    @property
    def url(self) -> str:
        return self.current.base_url


@pytest.fixture(scope="module")
def stages() -> Iterator[Stages]:
    holder = Stages()
    holder.all.append(holder.current)
    try:
        holder.current.start()
        yield holder
    finally:
        for stage in holder.all:
            if stage.process is not None and stage.process.poll() is None:
                stage.stop()
            stage.kill_leftovers()
        remove_state_dir(holder.directory)


def create_event(base: str, *, capacity: int = 10, max_per_order: int = 10, hold_seconds: int = 600,
                 name: str = "E2E Night") -> dict[str, Any]:
    response = requests.post(f"{base}/events", headers=ORGANIZER, timeout=30, json={
        "name": name, "starts_at": "2030-05-01T19:00:00Z", "hold_seconds": hold_seconds,
        "tiers": [{"name": "General", "capacity": capacity, "price": 2500, "max_per_order": max_per_order}],
    })
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def reserve(base: str, event_id: str, quantity: int = 1, *, device: str | None = None) -> requests.Response:
    headers = {"Idempotency-Key": f"e2e-{uuid.uuid4()}", "X-Device-Id": device or f"device-{uuid.uuid4()}"}
    return requests.post(f"{base}/events/{event_id}/reservations", headers=headers, json={"quantity": quantity},
                         timeout=60)


def available(base: str, event_id: str) -> int:
    response = requests.get(f"{base}/events/{event_id}/availability", timeout=30)
    assert response.status_code == 200, response.text
    return int(response.json()["available_seats"])


def test_ready_banner_health_and_stage_file(stages: Stages) -> None:
    stage = stages.current
    output = stage.output
    assert f"Ready: {stage.base_url}" in output
    assert ADMIN_TOKEN in output  # the organizer token is printed
    assert "curl" in output and "Idempotency-Key" in output
    assert stage.info["base_url"] == stage.base_url
    assert stage.info["token"] == ADMIN_TOKEN
    assert stage.info["database_url"].startswith("postgresql://")
    assert stage.info["dynamodb_endpoint"].startswith("http://127.0.0.1:")
    assert stage.info["pid"] == stage.process.pid if stage.process else False
    assert (stages.directory / "stage.lock").exists()
    health = requests.get(f"{stage.base_url}/health", timeout=10)
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert health.headers["Content-Type"] == "application/json"
    # The demo event of the sample events is seeded.
    assert available(stage.base_url, DEMO_EVENT_ID) >= 0


def test_gateway_answers_like_api_gateway(stages: Stages) -> None:
    base = stages.url
    unknown = requests.get(f"{base}/no/such/route", timeout=10)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    wrong_method = requests.put(f"{base}/health", timeout=10)
    assert wrong_method.status_code == 404
    assert wrong_method.json()["error"]["code"] == "not_found"
    # A method no route has, and http.server does not know: API Gateway's 404 too, never a 501.
    for method in ("TRACE", "PROPFIND", "CONNECT"):
        odd = requests.request(method, f"{base}/health", timeout=10)
        assert (odd.status_code, odd.json()["error"]["code"]) == (404, "not_found"), method
    # Over API Gateway's 10 MB: refused by the gateway, in the contract's shape.
    huge = requests.post(f"{base}/events", data=b"x" * (10 * 1024 * 1024 + 1), headers=ORGANIZER, timeout=60)
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "payload_too_large"
    # Over the functions' 64 KiB: refused by the function.
    big = requests.post(f"{base}/events", data=b"x" * (65 * 1024), headers=ORGANIZER, timeout=30)
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "payload_too_large"
    # A non-UTF-8 body reaches the function base64-encoded and is reported as malformed JSON.
    binary = requests.post(f"{base}/events/{DEMO_EVENT_ID}/reservations", data=b"\xff\xfe\x00",
                           headers={"Idempotency-Key": f"e2e-{uuid.uuid4()}"}, timeout=30)
    assert binary.status_code == 400
    assert binary.json()["error"]["code"] == "malformed_json"
    valid = {"name": "x", "starts_at": "2030-05-01T19:00:00Z", "tiers": [{"name": "A", "capacity": 1, "price": 0}]}
    unauthorized = requests.post(f"{base}/events", json=valid, timeout=30)
    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"]["code"] == "unauthorized"
    missing = requests.get(f"{base}/events/{uuid.uuid4()}?verbose=1", timeout=30)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "event_not_found"


def test_full_flow_with_scheduled_expiry(stages: Stages) -> None:
    base = stages.url
    event = create_event(base, capacity=10, hold_seconds=30)
    event_id = event["event_id"]
    assert requests.get(f"{base}/events/{event_id}", timeout=30).json()["tiers"][0]["capacity"] == 10

    held = reserve(base, event_id, 2)
    assert held.status_code == 201, held.text
    reservation = held.json()
    assert reservation["status"] == "held"
    assert available(base, event_id) == 8

    confirm_key = f"e2e-{uuid.uuid4()}"
    confirmed = requests.post(f"{base}/reservations/{reservation['reservation_id']}/confirm",
                              headers={"Idempotency-Key": confirm_key,
                                       "X-Reservation-Secret": reservation["reservation_secret"]},
                              json={"payment_token": "tok_visa"},
                              timeout=60)
    assert confirmed.status_code == 200, confirmed.text
    body = confirmed.json()
    assert body["status"] == "confirmed"
    assert len(body["tickets"]) == 2
    assert body["payment"]["status"] == "captured"

    code = body["tickets"][0]["ticket_code"]
    first = requests.post(f"{base}/tickets/{code}/check-in", headers=ORGANIZER, timeout=30)
    assert first.status_code == 200, first.text
    assert first.json()["ticket_code"] == code
    second = requests.post(f"{base}/tickets/{code}/check-in", headers=ORGANIZER, timeout=30)
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "already_checked_in"
    assert second.json()["error"]["checked_in_at"] == first.json()["checked_in_at"]

    # A hold that lapses is expired by the scheduled function (every second here) and its seats return.
    lapsing = reserve(base, event_id, 3)
    assert lapsing.status_code == 201, lapsing.text
    lapsing_id, lapsing_secret = lapsing.json()["reservation_id"], lapsing.json()["reservation_secret"]
    assert available(base, event_id) == 5
    with psycopg.connect(stages.current.info["database_url"], autocommit=True) as conn:
        conn.execute("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE reservation_id = %s",
                     (lapsing_id,))
        deadline = time.monotonic() + 20
        row: tuple[Any, ...] | None = None
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT r.status, r.expired_at, i.seats_taken FROM reservations r"
                " JOIN tier_inventory i USING (tier_id) WHERE r.reservation_id = %s", (lapsing_id,)).fetchone()
            if row is not None and row[0] == "expired":
                break
            time.sleep(0.25)
        assert row is not None and row[0] == "expired", f"the scheduled expiry did not run: {row}"
        assert row[1] is not None
        assert row[2] == 2  # only the confirmed seats are taken
    got = requests.get(f"{base}/reservations/{lapsing_id}", headers={"X-Reservation-Secret": lapsing_secret},
                       timeout=30)
    assert got.status_code == 200
    assert got.json()["status"] == "expired"
    assert available(base, event_id) == 8
    assert "ExpireFunction (scheduled): {\"expired\": 1," in stages.current.output


def test_concurrent_reserves_never_oversell(stages: Stages) -> None:
    base = stages.url
    event_id = create_event(base, capacity=10, max_per_order=10)["event_id"]
    requests_count = 100
    barrier = threading.Barrier(requests_count)

    def attempt(_: int) -> tuple[int, str]:
        barrier.wait(30)
        response = reserve(base, event_id, 1)
        code = response.json().get("error", {}).get("code", "") if response.status_code != 201 else ""
        return response.status_code, code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=requests_count) as pool:
        outcomes = list(pool.map(attempt, range(requests_count)))
    elapsed = time.monotonic() - started
    statuses = Counter(status for status, _ in outcomes)
    codes = Counter(code for status, code in outcomes if status == 409)
    print(f"\n100 concurrent reserves over HTTP in {elapsed:.2f} s: {dict(statuses)} {dict(codes)}")
    assert statuses == {201: 10, 409: 90}, outcomes
    assert codes == {"sold_out": 90}
    assert available(base, event_id) == 0
    with psycopg.connect(stages.current.info["database_url"], autocommit=True) as conn:
        held = conn.execute("SELECT coalesce(sum(quantity), 0) FROM reservations WHERE event_id = %s"
                            " AND status = 'held'", (event_id,)).fetchone()
        taken = conn.execute("SELECT i.seats_taken FROM tier_inventory i JOIN tiers t USING (tier_id)"
                             " WHERE t.event_id = %s", (event_id,)).fetchone()
    assert held is not None and held[0] == 10
    assert taken is not None and taken[0] == 10


def test_second_start_is_refused(stages: Stages) -> None:
    env = stage_env(stages.directory, stages.current.port + 1)
    started = time.monotonic()
    second = subprocess.run([sys.executable, "-m", "localstage"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert second.returncode != 0
    assert "already running" in second.stderr
    assert stages.url in second.stderr
    assert time.monotonic() - started < 30
    # The running stage is untouched.
    assert requests.get(f"{stages.url}/health", timeout=10).status_code == 200
    assert (stages.directory / "stage.lock").exists()


def test_busy_port_is_reported(stages: Stages) -> None:
    other = new_state_dir()
    try:
        env = stage_env(other, stages.current.port)
        result = subprocess.run([sys.executable, "-m", "localstage"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode != 0
        assert f"port {stages.current.port}" in result.stderr and "busy" in result.stderr
        assert not (other / "pgdata").exists()  # nothing was started
        assert not (other / "stage.lock").exists()
    finally:
        remove_state_dir(other)


def run_invoke(directory: Path, function: str, event_file: str, *,
               env_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = stage_env(directory, 0)
    env.pop("TICKETS_ADMIN_TOKEN")
    options = ["--env-vars", str(env_file)] if env_file else []
    return subprocess.run([sys.executable, "-m", "localstage", "invoke", *options, function, event_file], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_invoke_uses_the_running_stage(stages: Stages) -> None:
    before = available(stages.url, DEMO_EVENT_ID)
    result = run_invoke(stages.directory, "reserve", "events/reserve.json")
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["statusCode"] == 201, response
    assert json.loads(response["body"])["status"] == "held"
    assert "using the running local stage" in result.stderr
    # The hold is in the stage's database: the stage's API sees it.
    assert available(stages.url, DEMO_EVENT_ID) == before - 2
    # The sample create_event.json carries the sample token, which invoke uses when none is set.
    created = run_invoke(stages.directory, "EventsFunction", "events/create_event.json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["statusCode"] == 201


def postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def test_a_killed_postmaster_is_restarted_and_meanwhile_requests_answer_503(stages: Stages) -> None:
    """The fault: the stage's PostgreSQL killed (SIGKILL to the postmaster) while buyers reserve and readers
    read. Until the stage has restarted it every request answers 503 `unavailable` with Retry-After, never
    a 500; then requests succeed again, and each buyer's retry under the same Idempotency-Key held its
    seat once: as many holds as keys answered 201, and the counters agree with the rows."""
    base = stages.url
    capacity = 2000
    event_id = create_event(base, capacity=capacity, max_per_order=1, name="Postmaster killed")["event_id"]
    pgdata = stages.directory / "pgdata"
    killed = postmaster_pid(pgdata)
    assert killed is not None
    stop = threading.Event()
    lock = threading.Lock()
    answers: Counter[tuple[str, int]] = Counter()
    unexpected: list[str] = []
    held: dict[str, str] = {}  # Idempotency-Key -> reservation_id
    retried_keys: set[str] = set()

    def record(kind: str, response: requests.Response, allowed: tuple[int, ...]) -> None:
        with lock:
            answers[(kind, response.status_code)] += 1
            if response.status_code == 503:
                ok = response.json()["error"]["code"] == "unavailable" and response.headers.get("Retry-After")
                if not ok:
                    unexpected.append(f"{kind}: 503 without Retry-After or code: {response.text}")
            elif response.status_code not in allowed:
                unexpected.append(f"{kind}: {response.status_code} {response.text}")

    def buyer(n: int) -> None:
        while not stop.is_set():
            key = f"e2e-postmaster-{n}-{uuid.uuid4()}"
            headers = {"Idempotency-Key": key, "X-Device-Id": f"postmaster-buyer-{n}-{key}"}
            for attempt in range(600):  # the same key until it is held (503s are retried, as a client would)
                response = requests.post(f"{base}/events/{event_id}/reservations", headers=headers,
                                         json={"quantity": 1}, timeout=60)
                record("reserve", response, (201,))
                if response.status_code == 201:
                    with lock:
                        held[key] = response.json()["reservation_id"]
                        if attempt:
                            retried_keys.add(key)
                    break
                if response.status_code != 503:
                    return
                time.sleep(0.2)
            time.sleep(0.05)

    def reader() -> None:
        while not stop.is_set():
            record("health", requests.get(f"{base}/health", timeout=60), (200,))
            record("availability", requests.get(f"{base}/events/{event_id}/availability", timeout=60), (200,))
            time.sleep(0.05)

    threads = [threading.Thread(target=buyer, args=(n,)) for n in range(3)] + [threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(held) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(killed, signal.SIGKILL)
        killed_at = time.monotonic()
        # The stage notices, and restarts it on the same port.
        deadline = killed_at + 90
        while time.monotonic() < deadline:
            restarted = postmaster_pid(pgdata)
            if restarted not in (None, killed) and "PostgreSQL restarted" in stages.current.output and \
                    requests.get(f"{base}/health", timeout=30).status_code == 200:
                break
            time.sleep(0.2)
        recovered_in = time.monotonic() - killed_at
        held_at_recovery = len(held)
        deadline = time.monotonic() + 30
        while len(held) < held_at_recovery + 6 and time.monotonic() < deadline:
            time.sleep(0.05)  # and buyers are served again
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)

    unavailable = sum(count for (_, status), count in answers.items() if status == 503)
    print(f"\npostmaster {killed} killed: {sum(answers.values())} requests {dict(answers)}; "
          f"{unavailable} answered 503 until PostgreSQL was back ({recovered_in:.1f} s); "
          f"{len(held)} holds, {len(retried_keys)} of them after a retry of their key")
    assert not unexpected, unexpected[:5]
    assert postmaster_pid(pgdata) not in (None, killed), stages.current.output[-3000:]
    assert "PostgreSQL restarted" in stages.current.output
    assert unavailable > 0  # the fault was seen, and answered as the contract says
    assert len(held) >= held_at_recovery + 6  # requests succeed again
    # Each key held its seat once, the retried ones included, and the counters agree with the rows.
    with psycopg.connect(stages.current.info["database_url"], autocommit=True) as conn:
        rows = conn.execute("SELECT reservation_id::text FROM reservations WHERE event_id = %s",
                            (event_id,)).fetchall()
        disagree = conn.execute("""
            SELECT i.tier_id FROM tier_inventory i JOIN tiers t USING (tier_id)
            WHERE t.event_id = %s AND i.seats_taken <> (SELECT count(*) FROM reservations r
                  WHERE r.tier_id = i.tier_id AND r.status IN ('held', 'confirmed'))""", (event_id,)).fetchall()
    assert sorted(row[0] for row in rows) == sorted(held.values())
    assert disagree == []
    assert available(base, event_id) == capacity - len(held)


def sample_event_functions() -> dict[str, str]:
    """Each sample event of events/ and the function of template.yaml it is for."""
    template = load_template()
    routes = {route.route_key: route.function for route in template.routes}
    functions = {name: routes[f"{method} {path}"] for name, method, path, *_ in SAMPLES}
    functions["authorizer"] = next(route.authorizer for route in template.routes if route.authorizer)
    functions["expire"] = next(schedule.function for schedule in template.schedules)
    return functions


# What each sample answers on a stage seeded with the demo events only (no demo reservation or ticket).
SAMPLE_ANSWERS = {"health": 200, "create_event": 201, "get_event": 200, "availability": 200, "reserve": 201,
                  "get_reservation": 404, "cancel": 404, "confirm": 404, "check_in": 404, "seat_map": 200,
                  "reserve_seats": 201}


def test_every_sample_event_runs_with_the_environment_sam_local_gets(stages: Stages, tmp_path: Path) -> None:
    env_file = stages.directory / "sam-env.json"
    assert env_file.stat().st_mode & 0o777 == 0o600  # it holds the organizer token
    assert f"--env-vars {env_file}" in stages.current.output
    functions = sample_event_functions()
    assert set(functions) == {path.stem for path in (ROOT / "events").glob("*.json")}
    # The authorizer's sample carries the demo token; the same request with the stage's token too.
    with_token = json.loads((ROOT / "events" / "authorizer.json").read_text())
    with_token["headers"]["authorization"] = f"Bearer {ADMIN_TOKEN}"
    (tmp_path / "authorizer_token.json").write_text(json.dumps(with_token))
    runs = {**{name: (function, f"events/{name}.json") for name, function in functions.items()},
            "authorizer_token": (functions["authorizer"], str(tmp_path / "authorizer_token.json"))}
    with ThreadPoolExecutor(3) as pool:
        results = dict(zip(runs, pool.map(lambda run: run_invoke(stages.directory, *run, env_file=env_file),
                                          runs.values()), strict=True))
    for name, result in results.items():
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
        assert "using the running local stage" in result.stderr
    answers = {name: json.loads(result.stdout) for name, result in results.items()}
    for name, status in SAMPLE_ANSWERS.items():
        assert answers[name]["statusCode"] == status, (name, answers[name])
    assert json.loads(answers["check_in"]["body"])["error"]["code"] == "ticket_not_found"
    assert answers["authorizer"]["context"]["role"] == "anonymous"
    assert answers["authorizer_token"]["context"]["role"] == "organizer"
    assert "expired" in answers["expire"]


def test_sigterm_stops_everything_and_restart_keeps_data(stages: Stages) -> None:
    base = stages.url
    event_id = create_event(base, capacity=5, name="Survives a restart")["event_id"]
    held = reserve(base, event_id, 2)
    assert held.status_code == 201
    reservation_id, secret = held.json()["reservation_id"], held.json()["reservation_secret"]
    first = stages.current
    assert first.process is not None
    worker_pids = [int(line.split("started worker ")[1].split()[0]) for line in first.output.splitlines()
                   if "started worker " in line]
    assert worker_pids

    # An Idempotency-Key's record, which must outlive the stage (moto keeps it in memory only).
    key, device = f"e2e-restart-{uuid.uuid4()}", f"device-{uuid.uuid4()}"
    keyed_event = create_event(base, capacity=5, name="Keyed across a restart")["event_id"]

    def keyed_reserve(url: str, quantity: int) -> requests.Response:
        return requests.post(f"{url}/events/{keyed_event}/reservations", json={"quantity": quantity},
                             headers={"Idempotency-Key": key, "X-Device-Id": device}, timeout=60)

    keyed = keyed_reserve(base, 1)
    assert keyed.status_code == 201, keyed.text

    started = time.monotonic()
    assert first.stop() == 0
    stop_seconds = time.monotonic() - started
    saved = stages.directory / "dynamodb.json"
    assert saved.exists() and saved.stat().st_mode & 0o077 == 0  # it holds responses: its owner's only
    assert postgres_pids(stages.directory / "pgdata") == []
    assert not (stages.directory / "stage.lock").exists()
    assert not (stages.directory / "stage.json").exists()
    assert not (stages.directory / "sam-env.json").exists()  # it names ports that are gone
    assert not (stages.directory / "pgdata" / "postmaster.pid").exists()
    for pid in worker_pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert "Local stage stopped" in first.output

    second = stages.start()
    print(f"\nstopped in {stop_seconds:.1f} s; restarted in {second.started_in:.1f} s")
    assert "initialising" not in second.output  # the cluster was kept, not recreated
    event = requests.get(f"{second.base_url}/events/{event_id}", timeout=30)
    assert event.status_code == 200
    assert event.json()["name"] == "Survives a restart"
    reservation = requests.get(f"{second.base_url}/reservations/{reservation_id}",
                               headers={"X-Reservation-Secret": secret}, timeout=30)
    assert reservation.status_code == 200
    assert reservation.json()["status"] == "held"
    assert available(second.base_url, event_id) == 3

    # The idempotency record is back in the new stage's DynamoDB: the same key and body replay the first
    # answer, and the same key with another body is refused by the record (the database alone would
    # answer the hold again).
    table = boto3.resource("dynamodb", endpoint_url=second.info["dynamodb_endpoint"], region_name="us-east-1",
                           aws_access_key_id="local", aws_secret_access_key="local").Table(
        second.info["tables"]["IdempotencyTable"])
    assert [item["status"] for item in table.scan()["Items"]].count("COMPLETED") >= 1
    assert "DynamoDB: restored" in second.output
    replay = keyed_reserve(second.base_url, 1)
    assert (replay.status_code, replay.json()) == (201, keyed.json())
    reused = keyed_reserve(second.base_url, 2)
    assert (reused.status_code, reused.json()["error"]["code"]) == (422, "idempotency_key_reused")
    assert available(second.base_url, keyed_event) == 4

    # Ctrl-C (SIGINT) stops it as cleanly.
    assert second.stop(2) == 0
    assert postgres_pids(stages.directory / "pgdata") == []
    assert not (stages.directory / "stage.lock").exists()


def test_invoke_without_a_stage_starts_and_stops_the_database(stages: Stages) -> None:
    assert stages.current.process is not None and stages.current.process.poll() is not None
    result = run_invoke(stages.directory, "reserve", "events/reserve.json")
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["statusCode"] == 201, response
    assert "no local stage is running" in result.stderr
    assert postgres_pids(stages.directory / "pgdata") == []
    assert not (stages.directory / "stage.lock").exists()
    empty = stages.directory.parent / f"{stages.directory.name}-env.json"
    empty.write_text("{}")
    refused = run_invoke(stages.directory, "reserve", "events/reserve.json", env_file=empty)
    empty.unlink()
    assert refused.returncode != 0 and "no local stage is running" in refused.stderr
    unknown = run_invoke(stages.directory, "nosuchfunction", "events/reserve.json")
    assert unknown.returncode != 0
    assert "no function" in unknown.stderr


@pytest.mark.skipif(not os.path.exists(ROOT / "events" / "reserve.json"), reason="events/ not generated")
def test_sample_events_are_current() -> None:
    from localstage.sample_events import sample_events

    for name, event in sample_events().items():
        on_disk = json.loads((ROOT / "events" / f"{name}.json").read_text())
        assert on_disk == event, f"events/{name}.json is stale: run python -m localstage.sample_events"
