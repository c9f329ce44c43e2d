"""A local DynamoDB: moto in server mode, with the tables of template.yaml.

moto keeps its tables in memory. Given a state file, the items outlive the server: they are
written there when it stops and put back when the next one starts (items whose TTL has passed
are left out, as DynamoDB would delete them), so that the local stage's idempotency records
survive a restart of the stage.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
from moto.dynamodb.responses import DynamoHandler
from moto.server import ThreadedMotoServer

from localstage.postgres import free_port

log = logging.getLogger("localstage")

_one_call_at_a_time = threading.Lock()
_moto_call_action = DynamoHandler.call_action


def _atomic_call_action(handler: Any) -> Any:
    with _one_call_at_a_time:
        return _moto_call_action(handler)


def serialize_dynamodb_calls() -> None:
    """Makes moto's conditional writes atomic, as DynamoDB's are.

    moto's PutItem reads the item, evaluates the condition and stores the item with no lock
    (moto/dynamodb/models/table.py, Table.put_item), and its server runs each request on a thread
    of its own: two concurrent PutItems with attribute_not_exists(id) could both succeed, and two
    environments would both own one Idempotency-Key. The server in this process runs one DynamoDB
    call at a time instead.
    """
    DynamoHandler.call_action = _atomic_call_action  # type: ignore[method-assign]


class LocalDynamoDB:
    """moto in server mode, in this process, with atomic DynamoDB calls (serialize_dynamodb_calls).

    Its port is chosen at once, so that the endpoint can be exported before anything reads it.
    With `state_file`, the tables' items are saved there on stop() and restored by start()."""

    def __init__(self, state_file: Path | None = None) -> None:
        serialize_dynamodb_calls()
        self.port = free_port()
        self.state_file = state_file
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._started = False
        self._tables: dict[str, Mapping[str, Any]] = {}

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, tables: Mapping[str, Mapping[str, Any]]) -> str:
        """Starts the server with `tables` (local name -> the table's Properties in template.yaml)."""
        # moto's server logs every request through werkzeug, boto3 its credentials: the callers log their own.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        for name in ("botocore", "boto3", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._server.start()
        self._started = True
        self._tables = dict(tables)
        create_tables(self.endpoint_url, tables)
        if self.state_file is not None:
            restored = restore_items(self.endpoint_url, self.state_file, tables)
            if restored:
                log.info("DynamoDB: restored %s from %s", ", ".join(f"{count} items of {name}" for name, count in
                                                             restored.items()), self.state_file)
        return self.endpoint_url

    def stop(self) -> None:
        if self._started:
            if self.state_file is not None:
                try:
                    saved = save_items(self.endpoint_url, self.state_file, self._tables)
                    log.info("DynamoDB: saved %d items to %s", sum(saved.values()), self.state_file)
                except Exception:
                    log.exception("DynamoDB: the items could not be saved to %s", self.state_file)
            self._server.stop()
            self._started = False


def _client(endpoint_url: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint_url, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106 - moto takes any key


def create_tables(endpoint_url: str, tables: Mapping[str, Mapping[str, Any]]) -> None:
    """Each table as template.yaml declares it (its keys, attributes and TTL), under its local name."""
    client = _client(endpoint_url)
    existing = set(client.list_tables()["TableNames"])
    for name, properties in tables.items():
        if name in existing:
            continue
        client.create_table(TableName=name, KeySchema=properties["KeySchema"],
                            AttributeDefinitions=properties["AttributeDefinitions"], BillingMode="PAY_PER_REQUEST")
        if properties.get("TimeToLiveSpecification"):
            client.update_time_to_live(TableName=name, TimeToLiveSpecification=properties["TimeToLiveSpecification"])


def _encode(value: Any) -> Any:
    """An attribute value (DynamoDB JSON, as boto3 returns it) as plain JSON: binary values tagged in base64."""
    if isinstance(value, bytes | bytearray):
        return {"__base64__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__base64__"}:
            return base64.b64decode(value["__base64__"])
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


def save_items(endpoint_url: str, state_file: Path, tables: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Writes every item of `tables` to state_file (atomically, readable by its owner only); returns the counts."""
    client = _client(endpoint_url)
    items: dict[str, list[Any]] = {}
    for name in tables:
        items[name] = []
        for page in client.get_paginator("scan").paginate(TableName=name):
            items[name].extend(_encode(item) for item in page.get("Items", []))
    partial = state_file.with_name(state_file.name + ".partial")
    partial.write_text(json.dumps({"saved_at": time.time(), "tables": items}), encoding="utf-8")
    partial.chmod(0o600)  # the records hold whole responses, reservation secrets included
    os.replace(partial, state_file)
    return {name: len(rows) for name, rows in items.items()}


def restore_items(endpoint_url: str, state_file: Path,
                  tables: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Puts back the items state_file holds for `tables`, but those whose TTL attribute has passed."""
    try:
        saved = json.loads(state_file.read_text(encoding="utf-8")).get("tables", {})
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("DynamoDB: %s is unreadable (%s); starting with empty tables", state_file, exc)
        return {}
    client = _client(endpoint_url)
    now = time.time()
    restored: dict[str, int] = {}
    for name, properties in tables.items():
        ttl = (properties.get("TimeToLiveSpecification") or {})
        ttl_attribute = ttl.get("AttributeName") if ttl.get("Enabled") else None
        count = 0
        for encoded in saved.get(name, []):
            item = _decode(encoded)
            expires = item.get(ttl_attribute, {}).get("N") if ttl_attribute else None
            if expires is not None and float(expires) < now:
                continue
            client.put_item(TableName=name, Item=item)
            count += 1
        restored[name] = count
    return restored
