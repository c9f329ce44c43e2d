"""The stage's Lambda emulation with a stand-in function: warm reuse, concurrency, timeouts and crashes,
and the gateway's event and response mapping over a real socket. No database needed."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from localstage.postgres import free_port
from localstage.server import Gateway, StageHTTPServer
from localstage.template import Route, compile_path, match_route, rate_seconds
from localstage.workers import FunctionConfig, FunctionPool, HandlerError, InvokeFailure

pytestmark = pytest.mark.stage

HANDLER = '''
import base64, os, time

INVOCATIONS = 0  # module state, kept between invocations of one worker


def lambda_handler(event, context):
    global INVOCATIONS
    INVOCATIONS += 1
    action = event.get("action") or (event.get("pathParameters") or {}).get("action")
    if action == "sleep":
        time.sleep(float(event.get("seconds") or (event.get("queryStringParameters") or {}).get("seconds", 1)))
    elif action == "crash":
        os._exit(3)
    elif action == "raise":
        raise ValueError("boom")
    elif action == "binary":
        return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True,
                "cookies": ["a=1; Path=/", "b=2; Path=/"]}
    elif action == "plain":
        return {"hello": "world"}
    return {"pid": os.getpid(), "invocations": INVOCATIONS, "function": context.function_name,
            "remaining_ms": context.get_remaining_time_in_millis(), "env": os.environ.get("STAND_IN"),
            "event": event}
'''


def config(code_dir: Path, timeout: float = 5.0) -> FunctionConfig:
    return FunctionConfig(name="StandInFunction", code_uri=str(code_dir), handler="app.lambda_handler",
                          timeout_seconds=timeout, memory_mb=128,
                          environment={"PATH": os.environ.get("PATH", ""), "STAND_IN": "yes"})


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(HANDLER)
    return tmp_path


@pytest.fixture
def pool(code_dir: Path) -> Iterator[FunctionPool]:
    created = FunctionPool(config(code_dir, timeout=1.5), max_workers=4)
    yield created
    created.close(grace=1)


def test_a_worker_keeps_its_module_state(pool: FunctionPool) -> None:
    first = pool.invoke({})
    second = pool.invoke({})
    assert first.init_duration_ms is not None and second.init_duration_ms is None
    assert first.result["pid"] == second.result["pid"]
    assert second.result["invocations"] == first.result["invocations"] + 1
    assert second.result["function"] == "StandInFunction"
    assert 0 < second.result["remaining_ms"] <= 1500
    assert second.result["env"] == "yes"  # the function's environment, set before its import


def test_concurrent_invocations_overlap_up_to_the_maximum(pool: FunctionPool) -> None:
    pool.prewarm(4)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as executor:
        results = list(executor.map(lambda _: pool.invoke({"action": "sleep", "seconds": 0.5}), range(8)))
    elapsed = time.monotonic() - started
    assert len(results) == 8
    assert pool.stats()["size"] == 4  # never more than the maximum: the other four waited
    assert 0.95 < elapsed < 2.5, elapsed  # two rounds of four at once, not eight in a row


def test_every_queued_invocation_gets_a_worker(pool: FunctionPool) -> None:
    """A freed worker wakes one queued request (not all of them: a load test queues thousands); a
    worker lost to a crash frees its place for one. None of 64 queued requests is left waiting."""
    actions = ["crash" if n % 8 == 0 else "plain" for n in range(64)]

    def call(action: str) -> str:
        try:
            pool.invoke({"action": action})
        except InvokeFailure as failure:
            return failure.kind
        return "ok"

    with ThreadPoolExecutor(max_workers=64) as executor:
        futures = [executor.submit(call, action) for action in actions]
        outcomes = [future.result(timeout=60) for future in futures]  # a lost wake-up hangs here
    assert outcomes == ["crash" if action == "crash" else "ok" for action in actions]
    assert pool.stats()["busy"] == 0 and pool.stats()["size"] <= 4


def test_a_timed_out_worker_is_killed_and_replaced(pool: FunctionPool) -> None:
    before = pool.invoke({}).result["pid"]
    started = time.monotonic()
    with pytest.raises(InvokeFailure) as failure:
        pool.invoke({"action": "sleep", "seconds": 30})
    assert failure.value.kind == "timeout"
    assert time.monotonic() - started < 3
    assert not Path(f"/proc/{before}/cmdline").exists() or Path(f"/proc/{before}/cmdline").read_bytes() == b""
    after = pool.invoke({})
    assert after.result["pid"] != before
    assert after.init_duration_ms is not None  # a cold start


def test_a_crashed_worker_is_replaced(pool: FunctionPool) -> None:
    before = pool.invoke({}).result["pid"]
    with pytest.raises(InvokeFailure) as failure:
        pool.invoke({"action": "crash"})
    assert failure.value.kind == "crash"
    assert "exited during the invocation" in failure.value.message
    assert pool.invoke({}).result["pid"] != before


def test_an_unhandled_error_keeps_the_worker(pool: FunctionPool) -> None:
    before = pool.invoke({}).result["pid"]
    with pytest.raises(HandlerError) as error:
        pool.invoke({"action": "raise"})
    assert error.value.error_type == "ValueError"
    assert "boom" in error.value.trace
    assert pool.invoke({}).result["pid"] == before


def test_a_broken_function_fails_at_init(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("raise ImportError('missing dependency')\n")
    broken = FunctionPool(config(tmp_path), max_workers=1)
    try:
        with pytest.raises(InvokeFailure) as failure:
            broken.invoke({})
        assert failure.value.kind == "init"
        assert "missing dependency" in failure.value.message
        assert broken.stats()["size"] == 0
    finally:
        broken.close()


def test_routes_and_schedules_from_paths() -> None:
    pattern, static, greedy = compile_path("/events/{event_id}/reservations")
    assert pattern.fullmatch("/events/abc/reservations") and static == 2 and not greedy
    assert not pattern.fullmatch("/events/a/b/reservations")
    routes = [
        Route("GET", "/files/{path+}", "A", *compile_path("/files/{path+}")),
        Route("GET", "/files/special", "B", *compile_path("/files/special")),
    ]
    routes.sort(key=lambda r: (-r.static_segments, r.greedy))
    found, _ = match_route(routes, "GET", "/files/special")
    assert found is not None and found.route.function == "B"
    found, _ = match_route(routes, "GET", "/files/a/b%20c")
    assert found is not None and found.path_parameters == {"path": "a/b c"}
    assert match_route(routes, "POST", "/files/special") == (None, True)
    assert rate_seconds("rate(1 minute)") == 60
    assert rate_seconds("rate(5 minutes)") == 300
    assert rate_seconds("rate(2 hours)") == 7200
    assert rate_seconds("rate(10 seconds)") == 10
    assert rate_seconds("cron(0 12 * * ? *)") is None


@pytest.fixture
def gateway_url(code_dir: Path) -> Iterator[tuple[str, FunctionPool]]:
    pool = FunctionPool(config(code_dir, timeout=1.5), max_workers=2)
    routes = [Route("ANY", "/echo/{action}", "StandInFunction", *compile_path("/echo/{action}"))]
    server = StageHTTPServer(("127.0.0.1", free_port()), Gateway(routes, {"StandInFunction": pool}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", pool
    server.shutdown()
    server.server_close()
    pool.close(grace=1)


def test_the_gateway_builds_payload_2_events(gateway_url: tuple[str, FunctionPool]) -> None:
    url, _ = gateway_url
    response = requests.post(f"{url}/echo/look?a=1&a=2&b=x%20y", data=b"\xff\x00binary",
                             headers={"X-Custom": "Yes", "Cookie": "c1=v1; c2=v2"}, timeout=30)
    assert response.status_code == 200
    event = response.json()["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /echo/{action}"
    assert event["rawPath"] == "/echo/look"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["pathParameters"] == {"action": "look"}
    assert event["headers"]["x-custom"] == "Yes"
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\x00binary"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    text = requests.post(f"{url}/echo/look", json={"k": "v"}, timeout=30).json()["event"]
    assert text["isBase64Encoded"] is False
    assert json.loads(text["body"]) == {"k": "v"}
    assert "queryStringParameters" not in text


def test_the_gateway_writes_lambda_responses(gateway_url: tuple[str, FunctionPool]) -> None:
    url, _ = gateway_url
    binary = requests.get(f"{url}/echo/binary", timeout=30)
    assert binary.status_code == 200
    assert binary.content == bytes(range(256))
    assert binary.headers["Content-Type"] == "application/octet-stream"
    assert binary.cookies.get("a") == "1" and binary.cookies.get("b") == "2"
    plain = requests.get(f"{url}/echo/plain", timeout=30)
    assert plain.status_code == 200
    assert plain.json() == {"hello": "world"}


def test_the_gateway_answers_503_for_timeouts_and_crashes(gateway_url: tuple[str, FunctionPool]) -> None:
    url, _ = gateway_url
    assert requests.get(f"{url}/echo/sleep?seconds=0.5", timeout=30).status_code == 200  # within 1.5 s
    started = time.monotonic()
    timed_out = requests.get(f"{url}/echo/sleep?seconds=30", timeout=30)
    assert timed_out.status_code == 503
    assert timed_out.json()["error"]["code"] == "unavailable"
    assert timed_out.headers["Retry-After"] == "1"
    assert time.monotonic() - started < 3
    crashed = requests.get(f"{url}/echo/crash", timeout=30)
    assert crashed.status_code == 503
    assert crashed.json()["error"]["code"] == "unavailable"
    assert crashed.headers["Retry-After"] == "1"
    failed = requests.get(f"{url}/echo/raise", timeout=30)
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "internal_error"
    assert requests.get(f"{url}/echo/ok", timeout=30).status_code == 200
