"""The waiting room's DynamoDB table (QueueTable): entries, arrival counters, the admission cursor
and the rank pages. Every key is spread so that no one item or partition takes a crowd.

- entry: pk `E#{event}#{shard}` (64 shards, from the token), sk the queue_token. Written on join
  and once on admission; read by each poll (its own item).
- arrival counter: pk `N#{event}#{lane}` (10 lanes), sk `P` (before the opening) or `S{slot}` (a
  100 ms slot after it). ADD 1 on each join; read by the cursor's writer.
- cursor: pk `C#{event}`, sk `-`. Written at most once a second (versioned); read once a second
  per execution environment.
- rank page: pk `R#{event}#{second}`, sk `-`. Written once, when the second is sealed; read once
  per environment and second.

A slot's counter takes the joins of 100 ms only, and consecutive slots are on different lanes.
The domain (tickets.domain.queue) says why; this module only reads and writes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from tickets.settings import settings
from tickets.store.db import StoreUnavailable
from tickets.store.idempotency_records import dynamodb_client_config

ENTRY_SHARDS = 64
LANES = 10
RETENTION_SECONDS = 7 * 24 * 60 * 60  # items are removed by TTL a week after their last write


@functools.cache
def _table() -> Any:
    """The table's boto3 resource, made once per environment. Building it reads boto3's service model,
    a second or more: the queue function's first request makes it (every function's import stays
    short: README, "Cold starts"), the local stage's init process before it forks workers (prepare);
    reserve, which imports the queue only to check an admission's signature, never does."""
    return _resource().Table(settings().queue_table)


@functools.cache
def _resource() -> Any:
    import boto3  # noqa: PLC0415 - on first use: a cold start of a function that never asks the queue skips it

    return boto3.resource("dynamodb", config=dynamodb_client_config())


def prepare() -> None:
    """Makes the table's resource now (localstage/workers.py, before forking)."""
    _table()


class ConditionFailed(Exception):
    """A conditional write found its condition false (the item exists, or moved on)."""


@contextmanager
def _unavailable() -> Iterator[None]:
    """Turns DynamoDB's faults (throttling included) into StoreUnavailable: the edge answers 503.
    A failed condition is the caller's business: ConditionFailed."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - loaded with boto3, on first use

    try:
        yield
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise ConditionFailed from error
        raise StoreUnavailable(f"the queue table: {error}") from error
    except BotoCoreError as error:
        raise StoreUnavailable(f"the queue table: {error}") from error


def _plain(value: Any) -> Any:
    """DynamoDB numbers (Decimal) as int or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _number(value: float | int) -> Decimal:
    return Decimal(str(round(value, 3))) if isinstance(value, float) else Decimal(value)


def _stored(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _number(value) if isinstance(value, int | float) and not isinstance(value, bool) else
            [_number(v) for v in value] if isinstance(value, list) else value for key, value in item.items()}


def entry_key(event_id: str, shard: int, token: str) -> dict[str, str]:
    return {"pk": f"E#{event_id}#{shard}", "sk": token}


def get_entry(event_id: str, shard: int, token: str) -> dict[str, Any] | None:
    """Read consistently: a poll right after the join finds the entry."""
    with _unavailable():
        item = _table().get_item(Key=entry_key(event_id, shard, token), ConsistentRead=True).get("Item")
    return _plain(item) if item else None


def put_entry(event_id: str, shard: int, token: str, attributes: Mapping[str, Any], now: float) -> bool:
    """Creates the entry; False when this buyer's entry exists already (a concurrent first join)."""
    item = {**entry_key(event_id, shard, token), **_stored(attributes), "ttl": int(now) + RETENTION_SECONDS}
    try:
        with _unavailable():
            _table().put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
    except ConditionFailed:
        return False
    return True


def record_admission(event_id: str, shard: int, token: str, admitted_at: float) -> float:
    """Sets the entry's admitted_at once; returns the one stored (the first poll that saw it admitted)."""
    with _unavailable():
        answer = _table().update_item(
            Key=entry_key(event_id, shard, token), UpdateExpression="SET admitted_at = if_not_exists(admitted_at, :at)",
            ConditionExpression="attribute_exists(pk)", ExpressionAttributeValues={":at": _number(admitted_at)},
            ReturnValues="ALL_NEW")
    return float(answer["Attributes"]["admitted_at"])


def entries(event_id: str) -> Iterator[dict[str, Any]]:
    """Every entry of the event (the organizer's statistics): one query per shard, paged."""
    for shard in range(ENTRY_SHARDS):
        query: dict[str, Any] = {"KeyConditionExpression": "pk = :pk",
                                 "ExpressionAttributeValues": {":pk": f"E#{event_id}#{shard}"}}
        while True:
            with _unavailable():
                page = _table().query(**query)
            yield from (_plain(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def next_arrival(event_id: str, lane: int, counter: str, now: float) -> int:
    """The next number of an arrival counter (ADD 1): this entry's place in its lane's slot."""
    with _unavailable():
        answer = _table().update_item(
            Key={"pk": f"N#{event_id}#{lane}", "sk": counter}, UpdateExpression="ADD n :one SET #ttl = :ttl",
            ExpressionAttributeNames={"#ttl": "ttl"},
            ExpressionAttributeValues={":one": 1, ":ttl": int(now) + RETENTION_SECONDS}, ReturnValues="UPDATED_NEW")
    return int(answer["Attributes"]["n"])


def _get_many(keys: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The items of `keys` that exist, read consistently, 100 keys a call (BatchGetItem)."""
    found: list[dict[str, Any]] = []
    name = settings().queue_table
    for start in range(0, len(keys), 100):
        request: dict[str, Any] = {name: {"Keys": keys[start:start + 100], "ConsistentRead": True}}
        while request:
            with _unavailable():
                answer = _resource().batch_get_item(RequestItems=request)
            found.extend(_plain(item) for item in answer.get("Responses", {}).get(name, []))
            request = answer.get("UnprocessedKeys") or {}
    return found


def pre_opening_counts(event_id: str) -> list[int]:
    """Each lane's count of entries made before the opening (one batch read, after the margin)."""
    counts = [0] * LANES
    for item in _get_many([{"pk": f"N#{event_id}#{lane}", "sk": "P"} for lane in range(LANES)]):
        counts[int(str(item["pk"]).rsplit("#", 1)[1])] = int(item["n"])
    return counts


def slot_counter(slot: int) -> str:
    return f"S{slot:012d}"


# Up to this many slots (10 s) are read key by key in one batch; a longer stretch (the cursor idle
# for a while) is read by a range query per lane, which finds only the slots that had arrivals.
BATCH_SLOTS = 100


def slot_counts(event_id: str, first: int, end: int) -> dict[int, int]:
    """The arrival counts of the slots first <= slot < end that had arrivals."""
    if end - first <= BATCH_SLOTS:
        keys = [{"pk": f"N#{event_id}#{slot % LANES}", "sk": slot_counter(slot)} for slot in range(first, end)]
        return {int(str(item["sk"])[1:]): int(item["n"]) for item in _get_many(keys)}
    counts: dict[int, int] = {}
    for lane in range(LANES):
        query: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :first AND :last", "ConsistentRead": True,
            "ExpressionAttributeValues": {":pk": f"N#{event_id}#{lane}", ":first": slot_counter(first),
                                          ":last": slot_counter(end - 1)}}
        while True:
            with _unavailable():
                page = _table().query(**query)
            for item in page.get("Items", []):
                counts[int(str(item["sk"])[1:])] = int(item["n"])
            if "LastEvaluatedKey" not in page:
                break
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return counts


def get_cursor(event_id: str, *, consistent: bool) -> dict[str, Any] | None:
    with _unavailable():
        item = _table().get_item(Key={"pk": f"C#{event_id}", "sk": "-"}, ConsistentRead=consistent).get("Item")
    return _plain(item) if item else None


def put_cursor(event_id: str, cursor: Mapping[str, Any], expected_version: int | None, now: float) -> bool:
    """Writes the cursor if it is still at expected_version (None: if there is none yet); False otherwise."""
    item = {"pk": f"C#{event_id}", "sk": "-", **_stored(cursor), "ttl": int(now) + RETENTION_SECONDS}
    condition: dict[str, Any] = (
        {"ConditionExpression": "attribute_not_exists(pk)"} if expected_version is None else
        {"ConditionExpression": "version = :expected",
         "ExpressionAttributeValues": {":expected": expected_version}})
    try:
        with _unavailable():
            _table().put_item(Item=item, **condition)
    except ConditionFailed:
        return False
    return True


def put_rank_pages(event_id: str, pages: Mapping[int, Mapping[int, int]], now: float) -> None:
    """Per sealed second, the rank of the first entry of each of its slots that had arrivals."""
    with _unavailable(), _table().batch_writer() as batch:
        for second, firsts in pages.items():
            batch.put_item(Item={"pk": f"R#{event_id}#{second}", "sk": "-", "ttl": int(now) + RETENTION_SECONDS,
                                 "firsts": {str(slot): Decimal(rank) for slot, rank in firsts.items()}})


def get_rank_page(event_id: str, second: int) -> dict[int, int] | None:
    with _unavailable():
        item = _table().get_item(Key={"pk": f"R#{event_id}#{second}", "sk": "-"}).get("Item")
    return {int(slot): int(rank) for slot, rank in item["firsts"].items()} if item else None

