"""The waiting room (API.md, "Waiting room"): join, poll, fairness, pacing, the stock gate and the
admission check on reserve.

The queue runs on a clock of the test's own (tickets.domain.queue.clock), so that minutes of an
on-sale pass in a few polls; PostgreSQL keeps the real time (holds lapse by an UPDATE, as in the
other tests).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_concurrency import assert_counters_agree_with_rows, race
from tests.support.api import Api, ApiResponse
from tickets.domain import queue

MARGIN = queue.SEAL_MARGIN_SECONDS


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock(time.time() + 1)  # ahead of the database: an event created now has opened on this clock
    monkeypatch.setattr(queue, "clock", fake)
    yield fake


def room_event(api: Api, *, per_minute: int = 600, seconds: int = 600, capacity: int = 10,
               **overrides: Any) -> dict[str, Any]:
    return api.create_event(waiting_room={"admit_per_minute": per_minute, "admission_seconds": seconds},
                            tiers=[{"name": "General", "capacity": capacity, "price": 2500, "max_per_order": 6}],
                            **overrides)


def join(api: Api, event: dict[str, Any], device: str) -> ApiResponse:
    return api.request("POST", f"/events/{event['event_id']}/queue", headers={"X-Device-Id": device})


def poll(api: Api, event: dict[str, Any], token: str) -> dict[str, Any]:
    answer = api.request("GET", f"/events/{event['event_id']}/queue/{token}")
    assert answer.status == 200, answer.text
    return dict(answer.body)


def joined(api: Api, event: dict[str, Any], devices: list[str]) -> list[str]:
    tokens = []
    for device in devices:
        answer = join(api, event, device)
        assert answer.status == 201, answer.text
        tokens.append(answer.body["queue_token"])
    return tokens


def admitted(api: Api, event: dict[str, Any], token: str, clock: Clock, *, step: float = 1.5,
             limit: int = 40) -> dict[str, Any]:
    """Polls (the clock moving `step` between polls) until the entry is admitted."""
    for _ in range(limit):
        entry = poll(api, event, token)
        if entry["state"] == "admitted":
            return entry
        assert entry["state"] == "waiting", entry
        clock.advance(step)
    raise AssertionError(f"not admitted after {limit} polls")


def reserve(api: Api, event: dict[str, Any], key: str, admission: str | None, quantity: int = 1,
            device: str = "buyer") -> ApiResponse:
    headers = {"Idempotency-Key": key, "X-Device-Id": device}
    if admission is not None:
        headers["X-Admission-Token"] = admission
    return api.request("POST", f"/events/{event['event_id']}/reservations", body={"quantity": quantity},
                       headers=headers)


def statistics(api: Api, event: dict[str, Any]) -> dict[str, Any]:
    answer = api.request("GET", f"/events/{event['event_id']}/queue", admin=True)
    assert answer.status == 200, answer.text
    return dict(answer.body)


# ----- the contract's cases -----

def test_an_event_shows_its_waiting_room_and_its_settings_are_validated(api: Api) -> None:
    event = room_event(api, per_minute=600, seconds=120)
    assert event["waiting_room"] == {"admit_per_minute": 600, "admission_seconds": 120}
    assert api.request("GET", f"/events/{event['event_id']}").body["waiting_room"] == event["waiting_room"]
    assert api.create_event()["waiting_room"] is None
    base = {"name": "X", "starts_at": "2030-04-01T19:00:00Z", "tiers": [{"name": "A", "capacity": 1, "price": 1}]}
    for room in ({"admit_per_minute": 0, "admission_seconds": 60},
                 {"admit_per_minute": 100_001, "admission_seconds": 60},
                 {"admit_per_minute": 10, "admission_seconds": 29},
                 {"admit_per_minute": 10, "admission_seconds": 3601}, {"admit_per_minute": 10},
                 {"admit_per_minute": 10, "admission_seconds": 60, "extra": 1},
                 {"admit_per_minute": "10", "admission_seconds": 60}):
        answer = api.request("POST", "/events", body={**base, "waiting_room": room}, admin=True)
        assert (answer.status, answer.error_code) == (422, "validation_error"), room


def test_one_entry_per_buyer_and_polls_of_unknown_entries(api: Api, clock: Clock) -> None:
    event = room_event(api)
    first = join(api, event, "alice")
    assert first.status == 201, first.text
    entry = first.body
    assert set(entry) == {"queue_token", "state", "position", "estimated_wait_seconds"}
    assert (entry["state"], entry["position"]) == ("waiting", 1) and entry["estimated_wait_seconds"] > 0
    again = join(api, event, "alice")
    assert (again.status, again.body["queue_token"]) == (200, entry["queue_token"])
    other = join(api, event, "bob")
    assert other.status == 201 and other.body["queue_token"] != entry["queue_token"]
    assert poll(api, event, entry["queue_token"])["state"] == "waiting"
    # Without X-Device-Id, the fingerprint is the address, agent and language, as for limits.
    anonymous = api.request("POST", f"/events/{event['event_id']}/queue", headers={"User-Agent": "k6"})
    assert api.request("POST", f"/events/{event['event_id']}/queue", headers={"User-Agent": "k6"}).body[
        "queue_token"] == anonymous.body["queue_token"]

    other_event = room_event(api)
    for path in (f"/events/{event['event_id']}/queue/{'A' * 22}", f"/events/{event['event_id']}/queue/short",
                 f"/events/{other_event['event_id']}/queue/{entry['queue_token']}",
                 f"/events/not-a-uuid/queue/{entry['queue_token']}"):
        answer = api.request("GET", path)
        assert (answer.status, answer.error_code) == (404, "queue_entry_not_found"), path

    plain = api.create_event()
    refused = api.request("POST", f"/events/{plain['event_id']}/queue")
    assert (refused.status, refused.error_code) == (422, "no_waiting_room")
    missing = api.request("POST", "/events/00000000-0000-4000-8000-000000000000/queue")
    assert (missing.status, missing.error_code) == (404, "event_not_found")
    assert api.request("GET", f"/events/{plain['event_id']}/queue", admin=True).error_code == "no_waiting_room"
    assert api.request("GET", f"/events/{event['event_id']}/queue").status == 401


def test_admission_then_reserve_and_the_checks_on_the_token(api: Api, clock: Clock, key: str, db: Any) -> None:
    event, other = room_event(api, seconds=60, capacity=3), room_event(api)
    (token,) = joined(api, event, ["alice"])
    clock.advance(MARGIN + 1)
    entry = admitted(api, event, token, clock)
    assert set(entry) >= {"queue_token", "state", "admission_token", "admission_expires_at"}
    admission = entry["admission_token"]
    assert poll(api, event, token)["admission_token"] == admission  # the same admission on every poll

    (other_token,) = joined(api, other, ["alice"])
    clock.advance(MARGIN + 1)
    others_admission = admitted(api, other, other_token, clock)["admission_token"]

    mac_at = admission.rindex(".") + 1
    flipped = admission[:mac_at] + ("A" if admission[mac_at] != "A" else "B") + admission[mac_at + 1:]
    payload, mac = admission.rsplit(".", 1)
    event_hex, expires, entry_token = payload.split(".")
    longer = f"{event_hex}.{int(expires) + 3600}.{entry_token}.{mac}"
    for header, code in ((None, "admission_required"), ("", "admission_required"), ("nonsense", "admission_invalid"),
                         (flipped, "admission_invalid"), (longer, "admission_invalid"),
                         (others_admission, "admission_invalid"), ("x" * 5000, "admission_invalid"),
                         (f"{event_hex}.{expires}.{'B' * 22}.{mac}", "admission_invalid")):
        refused = reserve(api, event, f"{key}-{code}-{len(header or '')}", header)
        assert (refused.status, refused.error_code) == (403, code), header

    first = reserve(api, event, key + "1", admission)
    assert first.status == 201, first.text
    # One admission reserves as often as the limits allow, from any device, until it lapses.
    assert reserve(api, event, key + "2", admission, device="another").status == 201
    assert reserve(api, event, key + "3", admission).status == 201
    # Checked before inventory: sold out, the admission is still what is answered first.
    assert reserve(api, event, key + "4", None).error_code == "admission_required"
    assert reserve(api, event, key + "5", admission).error_code == "sold_out"

    clock.advance(61)
    assert poll(api, event, token)["state"] == "expired"
    lapsed = reserve(api, event, key + "6", admission)
    assert (lapsed.status, lapsed.error_code) == (403, "admission_expired")
    # An event without a waiting room ignores the header.
    plain = api.create_event()
    assert reserve(api, plain, key + "7", "whatever").status == 201
    assert_counters_agree_with_rows(db)


def test_a_buyers_concurrent_first_joins_make_one_entry(environments: Api) -> None:
    event = room_event(environments)
    assert join(environments, event, "warming the function's first environment").status == 201
    answers = race(8, lambda _: join(environments, event, "eager"))
    assert sorted(answer.status for answer in answers) == [200] * 7 + [201]
    assert len({answer.body["queue_token"] for answer in answers}) == 1


# ----- fairness -----

def test_entries_before_the_opening_are_admitted_in_a_random_order(api: Api, clock: Clock) -> None:
    opening = clock.now + 3600
    event = room_event(api, sales_start_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.ceil(opening))))
    tokens = joined(api, event, [f"early-{n}" for n in range(40)])
    clock.now = math.ceil(opening) + MARGIN + 0.5  # the draw
    positions = [poll(api, event, token)["position"] for token in tokens]
    assert sorted(positions) == list(range(1, 41))  # a permutation of the places
    assert positions != list(range(1, 41)) and positions != list(range(40, 0, -1))
    # Arriving early gives no edge: the first ten to arrive are not the first ten admitted.
    assert sorted(positions[:10]) != list(range(1, 11))
    # ... and the draw holds: 0.2 s later (2 admitted at 10 a second) the order is the same.
    clock.advance(0.2)
    later = [poll(api, event, token) for token in tokens]
    assert [entry["state"] for entry in later] == ["admitted" if p <= 2 else "waiting" for p in positions]
    assert [entry["position"] for entry in later if entry["state"] == "waiting"] == [p - 2 for p in positions if p > 2]


def test_entries_after_the_opening_keep_their_arrival_order(api: Api, clock: Clock) -> None:
    event = room_event(api, per_minute=1)  # nobody admitted for a minute: positions are ranks
    tokens = []
    for n in range(40):  # several to a 100 ms slot, some slots empty, over 7 seconds
        tokens += joined(api, event, [f"late-{n}"])
        clock.advance(0.03 if n % 4 else 0.45)
        poll(api, event, tokens[0])  # the cursor advances (and seals seconds) as the polls come
    clock.advance(MARGIN + 1)
    positions = [poll(api, event, token)["position"] for token in tokens]
    assert positions == list(range(1, 41))


# ----- pacing -----

def test_admissions_are_paced_evenly(api: Api, clock: Clock) -> None:
    per_minute = 60
    event = room_event(api, per_minute=per_minute)
    tokens = joined(api, event, [f"paced-{n}" for n in range(25)])
    clock.advance(MARGIN)
    admitted_at: dict[str, float] = {}
    for _ in range(30):
        clock.advance(1.5)
        for token in tokens:
            if token not in admitted_at and poll(api, event, token)["state"] == "admitted":
                admitted_at[token] = clock.now
    assert len(admitted_at) == 25
    # In arrival order, and in any 10 s at most admit_per_minute / 6 + 1.
    moments = [admitted_at[token] for token in tokens]
    assert moments == sorted(moments)
    for start in moments:
        assert sum(start <= moment < start + 10 for moment in moments) <= per_minute // 6 + 1
    # At that pace: 25 admissions take about 25 s (polled every 1.5 s).
    assert 20 <= moments[-1] - moments[0] <= 30


# ----- the stock: closing at sell-out, waking when a hold lapses -----

def test_the_queue_waits_while_holds_are_live_wakes_when_one_lapses_and_closes_at_sell_out(
        api: Api, clock: Clock, key: str, db: Any) -> None:
    event = room_event(api, per_minute=60, capacity=2)
    first, *rest = joined(api, event, ["first", *(f"next-{n}" for n in range(11))])
    clock.advance(MARGIN)
    hold = reserve(api, event, key + "hold", admitted(api, event, first, clock)["admission_token"], quantity=2)
    assert hold.status == 201, hold.text
    # No seat is free, but a hold is live: after the pass that sees it, nobody more is admitted.
    for _ in range(2):
        clock.advance(1.5)
        states = [poll(api, event, token)["state"] for token in rest]
    waiting = [token for token, state in zip(rest, states, strict=True) if state == "waiting"]
    assert len(waiting) >= 3
    before = [poll(api, event, token)["position"] for token in waiting]
    for _ in range(4):
        clock.advance(1.5)
        assert [poll(api, event, token)["position"] for token in waiting] == before
    assert statistics(api, event)["waiting"] == len(waiting)

    # The hold lapses: the seats are free again, and admission goes on.
    db.execute("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE reservation_id = %s",
               (hold.body["reservation_id"],))
    buyer = admitted(api, event, waiting[0], clock)
    bought = reserve(api, event, key + "buy", buyer["admission_token"], quantity=2, device="buyer-2")
    assert bought.status == 201, bought.text
    assert api.confirm(bought.body["reservation_id"], key=key + "pay").status == 200
    # Sold, and no hold left: once a pass has seen it, every entry not admitted is sold out.
    for _ in range(2):
        clock.advance(1.5)
        closing = [poll(api, event, token)["state"] for token in waiting[1:]]
    assert set(closing) <= {"admitted", "sold_out"} and closing.count("sold_out") >= 3
    counts = statistics(api, event)
    assert (counts["sold_out"], counts["waiting"]) == (closing.count("sold_out"), 0)
    assert counts["admitted"] + counts["expired"] == 12 - counts["sold_out"]
    assert counts["admit_per_minute"] == 60
    assert_counters_agree_with_rows(db)


def test_the_lottery_is_a_permutation() -> None:
    for total in (1, 2, 3, 5, 17, 64, 100, 257):
        assert sorted(queue._lottery("seed", index, total) for index in range(total)) == list(range(total))
    assert [queue._lottery("a", i, 50) for i in range(50)] != [queue._lottery("b", i, 50) for i in range(50)]
