"""The local stage end to end: `python -m localstage` as a subprocess, driven over real sockets."""

from __future__ import annotations

import json
import os
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

import psycopg
import pytest
import requests

from localstage.lambda_runtime import ROOT
from localstage.seed import DEMO_EVENT_ID
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


def run_invoke(directory: Path, function: str, event_file: str) -> subprocess.CompletedProcess[str]:
    env = stage_env(directory, 0)
    env.pop("TICKETS_ADMIN_TOKEN")
    return subprocess.run([sys.executable, "-m", "localstage", "invoke", function, event_file], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


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

    started = time.monotonic()
    assert first.stop() == 0
    stop_seconds = time.monotonic() - started
    assert postgres_pids(stages.directory / "pgdata") == []
    assert not (stages.directory / "stage.lock").exists()
    assert not (stages.directory / "stage.json").exists()
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
    unknown = run_invoke(stages.directory, "nosuchfunction", "events/reserve.json")
    assert unknown.returncode != 0
    assert "no function" in unknown.stderr


@pytest.mark.skipif(not os.path.exists(ROOT / "events" / "reserve.json"), reason="events/ not generated")
def test_sample_events_are_current() -> None:
    from localstage.sample_events import sample_events

    for name, event in sample_events().items():
        on_disk = json.loads((ROOT / "events" / f"{name}.json").read_text())
        assert on_disk == event, f"events/{name}.json is stale: run python -m localstage.sample_events"
