"""The waiting room: joining, polling, the paced admission and the admission check on reserve.

How it scales (README, "Waiting room"): joining and polling touch DynamoDB only (QueueTable,
tickets/store/queue_records.py), each request its own entry and one small counter of its 100 ms
slot; what every poll needs of the event, its settings and its admission cursor, is cached per
execution environment (settings for good, the cursor for a second), and PostgreSQL is asked
for the stock once a second per event, by whichever poll advances the cursor.

Order. An entry made before the opening (sales_start_at) gets a place in one of 10 lanes; once
the opening is past by SEAL_MARGIN_SECONDS, no such join can still take a number, the lanes'
counts are final and the entries are ranked by a keyed random permutation of their places (a
Feistel network over [0, N), keyed by a seed drawn then): a lottery, where arriving early before
the opening gives no edge. An entry made after the opening is counted in its 100 ms slot's
counter, which numbers the slot's arrivals in the order they reached it; a second's slots are
sealed SEAL_MARGIN_SECONDS after it ends, and their entries ranked after all earlier ones: arrival order.

Pacing. The cursor is the number of ranks admitted. While the event is open it grows at
admit_per_minute / 60 a second, read by every poll as C + rate * (now - T) (at most 2 s past
the write at T), and never past the ranks known; the writer (one conditional write a second,
won by one poll) stores the value that formula gives, so the admitted count is a continuous
function of time whose slope is at most the rate: in any 10 s at most admit_per_minute / 6 + 1
entries cross it. An entry whose rank is below the cursor is admitted; the first poll that sees
it records the moment (its admission_expires_at follows) and answers a signed admission token.

Stock. The writer reads the event's free seats and live holds: free seats, the cursor runs; none
free but holds live, it stops (entries wait: a lapsed or cancelled hold frees seats, and the next
pass runs it again); neither, or the sales ended, the event is sold out and every entry not yet
admitted answers sold_out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import random
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tickets.ids import parse_id
from tickets.models.queue import QueueEntry, QueueState, QueueStatistics
from tickets.observability import count
from tickets.refusals import Refusal
from tickets.settings import settings
from tickets.store import db
from tickets.store import queue_records as records

JOIN_REFUSALS = ("event_not_found", "no_waiting_room")
POLL_REFUSALS = ("queue_entry_not_found",)
STATISTICS_REFUSALS = ("event_not_found", "no_waiting_room")

SLOTS_PER_SECOND = 10
# A join takes its number within LATE_SECONDS of the moment that chose its slot, or takes another
# in the slot of the moment it retries; so once a slot (or the opening) is SEAL_MARGIN_SECONDS
# past (that and a second of clock skew), no number of it is still to be taken, and it is sealed.
LATE_SECONDS = 2.0
SEAL_MARGIN_SECONDS = LATE_SECONDS + 1.0
ADVANCE_AFTER_SECONDS = 1.0  # the cursor is written at most once a second...
ADVANCE_JITTER_SECONDS = 0.5  # ...by the first of the environments whose random patience ran out
EXTRAPOLATE_SECONDS = 2.0  # how far past its write a cursor is read forward
CURSOR_CACHE_SECONDS = 1.0
SECRET_CACHE_SECONDS = 300
CACHE_LIMIT = 4096

CLOSED, OPEN, PAUSED, SOLD_OUT = "closed", "open", "paused", "sold_out"
QUEUE_TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")
ADMISSION_TOKEN = re.compile(r"([0-9a-f]{32})\.([0-9]{1,12})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})")


def clock() -> float:
    """Now, in seconds since the epoch (the tests run the queue on a clock of their own)."""
    return time.time()


@dataclass(frozen=True)
class QueueEvent:
    """What the queue needs of an event: fixed once the event exists, so cached for good."""

    event_id: str
    opening: float  # sales_start_at, else the event's creation
    sales_end: float | None
    admit_per_minute: int | None
    admission_seconds: int | None

    @property
    def rate(self) -> float:
        return (self.admit_per_minute or 0) / 60


@dataclass(frozen=True)
class Cursor:
    admitted: float  # ranks admitted at `at`
    at: float
    mode: str  # closed (not yet drawn), open, paused (no free seats, live holds), sold_out
    ranked: int  # ranks known: the lottery's and the sealed slots' entries
    sealed_slots: int  # slots below this are ranked
    pre_counts: tuple[int, ...] | None  # each lane's entries made before the opening, once drawn
    seed: str  # the lottery's key, drawn with it
    version: int

    def admitted_by(self, now: float, rate: float) -> float:
        if self.mode != OPEN:
            return self.admitted
        grown = self.admitted + rate * min(max(now - self.at, 0.0), EXTRAPOLATE_SECONDS)
        return min(grown, max(float(self.ranked), self.admitted))

    def item(self) -> dict[str, Any]:
        return {"admitted": self.admitted, "at": self.at, "mode": self.mode, "ranked": self.ranked,
                "sealed_slots": self.sealed_slots, "pre_counts": list(self.pre_counts or []),
                "drawn": self.pre_counts is not None, "seed": self.seed, "version": self.version}

    @classmethod
    def of(cls, item: dict[str, Any]) -> Cursor:
        return cls(admitted=float(item["admitted"]), at=float(item["at"]), mode=str(item["mode"]),
                   ranked=int(item["ranked"]), sealed_slots=int(item["sealed_slots"]),
                   pre_counts=tuple(int(n) for n in item["pre_counts"]) if item["drawn"] else None,
                   seed=str(item["seed"]), version=int(item["version"]))


# Per execution environment.
_events: dict[str, QueueEvent] = {}
_cursors: dict[str, tuple[Cursor, float]] = {}
_rank_pages: dict[tuple[str, int], dict[int, int]] = {}


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= CACHE_LIMIT:
        cache.clear()
    cache[key] = value


def _epoch(moment: str | None) -> float | None:
    return datetime.fromisoformat(moment).timestamp() if moment else None


def queue_event(event_uuid: uuid.UUID) -> QueueEvent | None:
    """The event's queue settings, read from PostgreSQL once per environment; None: no such event."""
    key = str(event_uuid)
    if key in _events:
        return _events[key]
    found = db.call("queue_event", event_uuid)
    if found is None:
        return None
    room = found["waiting_room"] or {}
    event = QueueEvent(event_id=key, opening=_epoch(found["sales_start_at"]) or float(_epoch(found["created_at"]) or 0),
                       sales_end=_epoch(found["sales_end_at"]), admit_per_minute=room.get("admit_per_minute"),
                       admission_seconds=room.get("admission_seconds"))
    _remember(_events, key, event)
    return event


def _waiting_room(event_id: str, *, missing: str = "event_not_found", no_room: str = "no_waiting_room") -> QueueEvent:
    event = queue_event(parse_id(event_id, not_found=missing))
    if event is None:
        raise Refusal(missing)
    if event.admit_per_minute is None:
        raise Refusal(no_room)
    return event


# ----- keys and tokens -----

def _secret() -> bytes:
    """The key tokens are signed with: the secret named by ADMISSION_SECRET_ARN, else TICKETS_ADMISSION_SECRET."""
    config = settings()
    if config.admission_secret_arn:
        # Powertools' parameters bring boto3: loaded by the first token signed or checked, not at init.
        from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415

        value = str(parameters.get_secret(config.admission_secret_arn, max_age=SECRET_CACHE_SECONDS)).strip()
    else:
        value = config.admission_secret.strip()
    if not value:
        raise RuntimeError("no admission secret: set ADMISSION_SECRET_ARN or TICKETS_ADMISSION_SECRET")
    return value.encode()


def _mac(*parts: object) -> bytes:
    return hmac.new(_secret(), "|".join(map(str, parts)).encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _queue_token(event_id: str, fingerprint: str) -> str:
    """The buyer's entry name: the same for the same buyer and event, unguessable without the key."""
    return _b64(_mac("queue", event_id, fingerprint))[:22]


def _shard(token: str) -> int:
    return int.from_bytes(hashlib.sha256(token.encode()).digest()[:2], "big") % records.ENTRY_SHARDS


def admission_token(event_id: str, queue_token: str, expires: int) -> str:
    payload = f"{uuid.UUID(event_id).hex}.{expires}.{queue_token}"
    return f"{payload}.{_b64(_mac('admission', payload))}"


def check_admission(event_uuid: uuid.UUID, token: str | None) -> None:
    """Before inventory, on an event with a waiting room: the X-Admission-Token must be one this
    event's queue signed, and not lapsed. No store is asked but for the event's settings (cached)."""
    event = queue_event(event_uuid)
    if event is None or event.admit_per_minute is None:
        return  # no waiting room (or no event: reserve answers event_not_found)
    token = (token or "").strip()
    if not token:
        raise Refusal("admission_required")
    parts = ADMISSION_TOKEN.fullmatch(token)
    if parts is None:
        raise Refusal("admission_invalid")
    expected = _b64(_mac("admission", token.rsplit(".", 1)[0]))
    if not hmac.compare_digest(expected, parts[4]) or parts[1] != event_uuid.hex:
        raise Refusal("admission_invalid")
    if clock() >= int(parts[2]):
        raise Refusal("admission_expired")


def _lottery(seed: str, index: int, total: int) -> int:
    """index's place in a random permutation of [0, total) keyed by seed: a 4-round Feistel network
    on the smallest even number of bits that holds total, walked until it lands inside."""
    bits = max(2, (total - 1).bit_length())
    half = (bits + 1) // 2
    mask = (1 << half) - 1
    key = seed.encode()
    value = index
    while True:
        left, right = value >> half, value & mask
        for round_number in range(4):
            mixed = hmac.new(key, f"{round_number}|{right}".encode(), hashlib.sha256).digest()
            left, right = right, left ^ (int.from_bytes(mixed[:8], "big") & mask)
        value = (left << half) | right
        if value < total:
            return value


# ----- the cursor -----

def _read_cursor(event_id: str, *, consistent: bool) -> Cursor | None:
    item = records.get_cursor(event_id, consistent=consistent)
    return Cursor.of(item) if item else None


def _mode(event: QueueEvent, now: float) -> str:
    if event.sales_end is not None and now >= event.sales_end:
        return SOLD_OUT
    stock = db.call("queue_stock", uuid.UUID(event.event_id))
    if stock["available_seats"] > 0:
        return OPEN
    return PAUSED if stock["live_holds"] > 0 else SOLD_OUT


def _advance(event: QueueEvent, now: float) -> Cursor:
    """One pass of the writer: credits the time since the last pass at the mode it had, draws the
    lottery and seals slots that are past the margin, reads the stock, and writes the cursor if no
    other environment did meanwhile (versioned)."""
    current = _read_cursor(event.event_id, consistent=True)
    if current is not None and now - current.at < ADVANCE_AFTER_SECONDS:
        return current
    base = current or Cursor(0.0, now, CLOSED, 0, 0, None, "", 0)
    admitted = base.admitted_by(now, event.rate)
    ranked, sealed, pre_counts, seed = base.ranked, base.sealed_slots, base.pre_counts, base.seed
    if pre_counts is None and now >= event.opening + SEAL_MARGIN_SECONDS:
        pre_counts, seed = tuple(records.pre_opening_counts(event.event_id)), secrets.token_hex(16)
        ranked += sum(pre_counts)
    if pre_counts is not None:
        # Whole seconds only: a rank page (a second's slots) is written once, complete.
        seal_end = math.floor(now - SEAL_MARGIN_SECONDS - event.opening) * SLOTS_PER_SECOND
        if seal_end > sealed:
            pages: dict[int, dict[int, int]] = {}
            for slot, arrivals in sorted(records.slot_counts(event.event_id, sealed, seal_end).items()):
                pages.setdefault(slot // SLOTS_PER_SECOND, {})[slot] = ranked
                ranked += arrivals
            if pages:  # written before the cursor that names them; the same values whoever writes them
                records.put_rank_pages(event.event_id, pages, now)
            sealed = seal_end
    mode = _mode(event, now) if pre_counts is not None else CLOSED
    advanced = Cursor(admitted, now, mode, ranked, sealed, pre_counts, seed, base.version + 1)
    if records.put_cursor(event.event_id, advanced.item(), current.version if current else None, now):
        return advanced
    return _read_cursor(event.event_id, consistent=True) or base


def _cursor(event: QueueEvent, now: float) -> Cursor:
    cached = _cursors.get(event.event_id)
    if cached is not None and 0 <= now - cached[1] < CURSOR_CACHE_SECONDS:
        return cached[0]
    cursor = _read_cursor(event.event_id, consistent=False)
    patience = ADVANCE_AFTER_SECONDS + random.uniform(0, ADVANCE_JITTER_SECONDS)  # noqa: S311 - spreads writers, no secret
    if cursor is None or now - cursor.at >= patience:
        cursor = _advance(event, now)
    _remember(_cursors, event.event_id, (cursor, now))
    return cursor


def _rank(event: QueueEvent, entry: dict[str, Any], cursor: Cursor) -> int | None:
    """The entry's place in the admission order, once known."""
    slot, lane, number = int(entry["slot"]), int(entry["lane"]), int(entry["n"])
    if slot < 0:  # joined before the opening: the lottery
        if cursor.pre_counts is None:
            return None
        index, total = sum(cursor.pre_counts[:lane]) + number - 1, sum(cursor.pre_counts)
        return _lottery(cursor.seed, index, total) if 0 <= index < total else None
    if slot >= cursor.sealed_slots:
        return None
    second = slot // SLOTS_PER_SECOND
    page = _rank_pages.get((event.event_id, second))
    if page is None:
        page = records.get_rank_page(event.event_id, second)
        if page is None:
            return None
        _remember(_rank_pages, (event.event_id, second), page)
    return page[slot] + number - 1 if slot in page else None


# ----- the calls -----

@dataclass(frozen=True)
class _Standing:
    state: QueueState
    admitted_at: float | None = None
    position: int | None = None
    wait_seconds: int | None = None


def _standing(event: QueueEvent, token: str, entry: dict[str, Any], now: float, *, record: bool) -> _Standing:
    admitted_at = entry.get("admitted_at")
    if admitted_at is None:
        cursor = _cursor(event, now)
        rank = _rank(event, entry, cursor)
        crossed = math.floor(cursor.admitted_by(now, event.rate))
        if rank is not None and rank < crossed:
            admitted_at = now
            if record:
                admitted_at = records.record_admission(event.event_id, _shard(token), token, now)
                count("QueueAdmitted")
    if admitted_at is not None:
        lapsed = now >= int(admitted_at) + (event.admission_seconds or 0)
        return _Standing("expired" if lapsed else "admitted", admitted_at=float(admitted_at))
    if cursor.mode == SOLD_OUT:
        return _Standing("sold_out")
    slot, number = int(entry["slot"]), int(entry["n"])
    if rank is not None:
        ahead, until_ranked = rank - crossed, 0.0
    elif slot < 0:  # before the draw: about its place among the arrivals (its lane's count, times the lanes)
        ahead, until_ranked = (number - 1) * records.LANES, event.opening + SEAL_MARGIN_SECONDS - now
    else:  # its slot is not sealed yet: those ranked and not admitted, and its slot's earlier arrivals
        ahead = cursor.ranked - crossed + number - 1
        until_ranked = event.opening + slot // SLOTS_PER_SECOND + 1 + SEAL_MARGIN_SECONDS - now
    position = max(ahead, 0) + 1
    wait = math.ceil(position / event.rate + max(until_ranked, 0.0))
    return _Standing("waiting", position=position, wait_seconds=wait)


def _entry(event: QueueEvent, token: str, standing: _Standing) -> QueueEntry:
    if standing.state == "admitted" and standing.admitted_at is not None:
        expires = int(standing.admitted_at) + (event.admission_seconds or 0)
        return QueueEntry(queue_token=token, state="admitted", position=None, estimated_wait_seconds=None,
                          admission_token=admission_token(event.event_id, token, expires),
                          admission_expires_at=datetime.fromtimestamp(expires, UTC))
    return QueueEntry(queue_token=token, state=standing.state, position=standing.position,
                      estimated_wait_seconds=standing.wait_seconds, admission_token=None, admission_expires_at=None)


def join(event_id: str, fingerprint: str) -> tuple[QueueEntry, bool]:
    """The buyer's entry, made now (True) or the one they have (False), in its current state."""
    event = _waiting_room(event_id)
    now = clock()
    token = _queue_token(event.event_id, fingerprint)
    shard = _shard(token)
    entry = records.get_entry(event.event_id, shard, token)
    created = False
    if entry is None:
        while True:
            stamp = clock()
            if stamp < event.opening:
                slot, lane, counter = -1, secrets.randbelow(records.LANES), "P"
            else:
                slot = math.floor((stamp - event.opening) * SLOTS_PER_SECOND)
                lane, counter = slot % records.LANES, records.slot_counter(slot)
            number = records.next_arrival(event.event_id, lane, counter, stamp)
            if clock() - stamp <= LATE_SECONDS:
                break
            # Too slow: the slot may be sealed already. The number stays unused (at worst a rank
            # nobody holds, admitted to no one); the entry takes one in the slot of now.
        entry = {"slot": slot, "lane": lane, "n": number, "joined_at": stamp}
        created = records.put_entry(event.event_id, shard, token, entry, now)
        if not created:  # the same buyer's other first call won: theirs is the entry (this number stays unused)
            entry = records.get_entry(event.event_id, shard, token)
            if entry is None:
                raise RuntimeError("a queue entry vanished between its conditional write and its read")
        else:
            count("QueueJoined")
    return _entry(event, token, _standing(event, token, entry, now, record=True)), created


def poll(event_id: str, queue_token: str) -> QueueEntry:
    event = _waiting_room(event_id, missing="queue_entry_not_found", no_room="queue_entry_not_found")
    if not QUEUE_TOKEN.fullmatch(queue_token):
        raise Refusal("queue_entry_not_found")
    entry = records.get_entry(event.event_id, _shard(queue_token), queue_token)
    if entry is None:
        raise Refusal("queue_entry_not_found")
    now = clock()
    return _entry(event, queue_token, _standing(event, queue_token, entry, now, record=True))


def statistics(event_id: str) -> QueueStatistics:
    """The entries now in each state (a read of every entry: the organizer's view, not the buyers')."""
    event = _waiting_room(event_id)
    now = clock()
    counts: dict[str, int] = {"waiting": 0, "admitted": 0, "expired": 0, "sold_out": 0}
    for item in records.entries(event.event_id):
        counts[_standing(event, str(item["sk"]), item, now, record=False).state] += 1
    return QueueStatistics(**counts, admit_per_minute=event.admit_per_minute or 0)
