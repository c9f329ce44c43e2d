"""A local DynamoDB: moto in server mode, with the tables of template.yaml."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import boto3
from moto.dynamodb.responses import DynamoHandler
from moto.server import ThreadedMotoServer

from localstage.postgres import free_port

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

    Its port is chosen at once, so that the endpoint can be exported before anything reads it."""

    def __init__(self) -> None:
        serialize_dynamodb_calls()
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._started = False

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
        create_tables(self.endpoint_url, tables)
        return self.endpoint_url

    def stop(self) -> None:
        if self._started:
            self._server.stop()
            self._started = False


def create_tables(endpoint_url: str, tables: Mapping[str, Mapping[str, Any]]) -> None:
    """Each table as template.yaml declares it (its keys, attributes and TTL), under its local name."""
    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106 - moto takes any key
    existing = set(client.list_tables()["TableNames"])
    for name, properties in tables.items():
        if name in existing:
            continue
        client.create_table(TableName=name, KeySchema=properties["KeySchema"],
                            AttributeDefinitions=properties["AttributeDefinitions"], BillingMode="PAY_PER_REQUEST")
        if properties.get("TimeToLiveSpecification"):
            client.update_time_to_live(TableName=name, TimeToLiveSpecification=properties["TimeToLiveSpecification"])
