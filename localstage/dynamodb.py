"""A local DynamoDB: moto in server mode, in a process of its own, with the tables of template.yaml.

Its own process, because the stage's process serves the HTTP API on a thread per connection (two
thousand in the on-sale load test) and all of that shares one interpreter lock: moto there got a
fraction of one core, and every function's DynamoDB call waited for it (README, "Waiting room").

moto keeps its tables in memory. Given a state file, the items outlive the server: they are
written there when it stops and put back when the next one starts (items whose TTL has passed
are left out, as DynamoDB would delete them), so that the local stage's idempotency records
survive a restart of the stage.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
from moto.dynamodb.responses import DynamoHandler

from localstage.lambda_runtime import ROOT
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


START_TIMEOUT_SECONDS = 30.0


class LocalDynamoDB:
    """moto in server mode, in a child process (`python -m localstage.dynamodb PORT`), with atomic
    DynamoDB calls (serialize_dynamodb_calls).

    Its port is chosen at once, so that the endpoint can be exported before anything reads it.
    With `state_file`, the tables' items are saved there on stop() and restored by start()."""

    def __init__(self, state_file: Path | None = None) -> None:
        self.port = free_port()
        self.state_file = state_file
        self._process: subprocess.Popen[bytes] | None = None
        self._tables: dict[str, Mapping[str, Any]] = {}

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, tables: Mapping[str, Mapping[str, Any]]) -> str:
        """Starts the server with `tables` (local name -> the table's Properties in template.yaml)."""
        # boto3 logs its credentials: the callers log their own.
        for name in ("botocore", "boto3", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "localstage.dynamodb", str(self.port)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # its stdin closing (we are gone) stops it
            process_group=0)  # the terminal's Ctrl-C goes to the stage, which saves the items first
        assert self._process.stdout is not None
        # "ready" once it listens; nothing (end of file) when it failed
        answered, _, _ = select.select([self._process.stdout], [], [], START_TIMEOUT_SECONDS)
        if not answered or self._process.stdout.readline().strip() != b"ready":
            self._terminate()
            raise RuntimeError(f"moto's server did not start on port {self.port} within {START_TIMEOUT_SECONDS:g} s")
        self._tables = dict(tables)
        create_tables(self.endpoint_url, tables)
        if self.state_file is not None:
            restored = restore_items(self.endpoint_url, self.state_file, tables)
            if restored:
                log.info("DynamoDB: restored %s from %s", ", ".join(f"{count} items of {name}" for name, count in
                                                             restored.items()), self.state_file)
        return self.endpoint_url

    def stop(self) -> None:
        if self._process is not None:
            if self.state_file is not None:
                try:
                    saved = save_items(self.endpoint_url, self.state_file, self._tables)
                    log.info("DynamoDB: saved %d items to %s", sum(saved.values()), self.state_file)
                except Exception:
                    log.exception("DynamoDB: the items could not be saved to %s", self.state_file)
            self._terminate()

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.stdin.close()  # type: ignore[union-attr]
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


class _OnePartition(threading.local):
    hash_key: Any = None


_querying = _OnePartition()


def query_one_partition() -> None:
    """Makes moto's Query of a table read the one partition it names.

    moto's Table.query lists every item of the table and sorts them all (Table.all_items), then
    keeps those of the partition: a query cost ~95 ms with 5,000 items in the table, so the queue's
    statistics (64 queries) ran past the function's 10 s timeout after a 2,000-buyer on-sale.
    While a table query runs, all_items answers that partition's items (the same result: the query
    keeps only those). Index queries are left as they are."""
    from moto.dynamodb.models.table import Table  # noqa: PLC0415 - the child only

    moto_query, moto_all_items = Table.query, Table.all_items

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or not self.range_key_attr:
            return moto_query(self, hash_key, *args, **kwargs)
        _querying.hash_key = hash_key
        try:
            return moto_query(self, hash_key, *args, **kwargs)
        finally:
            _querying.hash_key = None

    def all_items(self: Any) -> Any:
        if _querying.hash_key is None:
            return moto_all_items(self)
        return sorted(self.items.get(_querying.hash_key, {}).values(), key=lambda item: item.range_key)

    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]


# The item calls the functions make: their results are DynamoDB JSON already (DynamoResult).
_ITEM_OPERATIONS = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem",
                              "BatchWriteItem"})


def answer_item_calls_as_json() -> None:
    """Writes the item calls' results as JSON directly.

    moto 5 serializes every answer by walking botocore's output shape attribute by attribute
    (moto/core/serialize.py): a 2,000-entry read took 2.7 ms an item, most of a call's time. A
    DynamoDB item call's result is already in the wire format (DynamoResult, through
    dynamo_to_dict), so its JSON is the answer; errors and every other operation keep moto's path."""
    from moto.dynamodb.responses import DynamoResult  # noqa: PLC0415 - the child only

    moto_execute_result = DynamoResult.execute_result

    def execute_result(self: Any, context: Any) -> Any:
        if context.operation_model.name in _ITEM_OPERATIONS and isinstance(self.result, dict):
            try:
                body = json.dumps(self.result, separators=(",", ":"))
            except TypeError:
                return moto_execute_result(self, context)
            return 200, {"Content-Type": "application/x-amz-json-1.0"}, body
        return moto_execute_result(self, context)

    DynamoResult.execute_result = execute_result  # type: ignore[method-assign]


def _front(full_port: int) -> type[BaseHTTPRequestHandler]:
    """The child's HTTP front: DynamoDB's calls straight to moto's DynamoHandler, on kept-alive
    connections; anything else (another service, moto's own API) passed to moto's full server.

    moto's server (werkzeug's development server and a Flask app per service) costs most of a
    DynamoDB call's time: it closes every connection, and finds the service of each request anew."""
    from moto.core.request import Request  # noqa: PLC0415 - the child only
    from werkzeug.exceptions import HTTPException  # noqa: PLC0415 - moto's errors are werkzeug's

    class Front(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if (self.headers.get("X-Amz-Target") or "").startswith("DynamoDB_"):
                status, headers, answer = self._dynamodb(body)
            else:
                status, headers, answer = self._pass_on(body)
            data = answer.encode() if isinstance(answer, str) else bytes(answer or b"")
            self.send_response(int(status))
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding", "status", "server",
                                        "date"):
                    self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET = do_PUT = do_DELETE = do_HEAD = _serve  # noqa: N815

        def _dynamodb(self, body: bytes) -> tuple[int, Mapping[str, Any], Any]:
            request = Request.from_primitives(self.command, f"http://{self.headers.get('Host')}{self.path}",
                                              dict(self.headers.items()), body)
            try:
                status, headers, answer = DynamoHandler.dispatch(request, request.raw_url, request.headers)
            except HTTPException as error:
                return error.code or 500, dict(error.get_headers()), error.get_body()
            return status, headers, answer

        def _pass_on(self, body: bytes) -> tuple[int, Mapping[str, Any], Any]:
            connection = http.client.HTTPConnection("127.0.0.1", full_port, timeout=60)
            try:
                connection.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                reply = connection.getresponse()
                return reply.status, dict(reply.getheaders()), reply.read()
            finally:
                connection.close()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per call: the stage logs its requests itself

    return Front


class _FrontServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # every execution environment connects at once when a burst starts


def serve(port: int) -> None:
    """The child: moto on 127.0.0.1:port (the front, then moto's own server behind it) until its
    stdin closes."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - the child only

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stage stops it, after saving the items
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # it logs every request
    serialize_dynamodb_calls()
    query_one_partition()
    answer_item_calls_as_json()
    full = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    full.start()
    front = _FrontServer(("127.0.0.1", port), _front(full.get_host_and_port()[1]))
    threading.Thread(target=front.serve_forever, name="front", daemon=True).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.buffer.read()  # until the stage closes it, or is gone
    os._exit(0)  # no teardown: the tables die with the process


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


if __name__ == "__main__":
    serve(int(sys.argv[1]))
