"""A local DynamoDB: moto in server mode, with the idempotency table of template.yaml."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from moto.dynamodb.responses import DynamoHandler
from moto.server import ThreadedMotoServer

from localstage.postgres import free_port

IDEMPOTENCY_TABLE = "tickets-idempotency"


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
    """moto in server mode, in this process, with atomic DynamoDB calls (serialize_dynamodb_calls)."""

    def __init__(self) -> None:
        serialize_dynamodb_calls()
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, table_name: str = IDEMPOTENCY_TABLE) -> str:
        self._server.start()
        create_idempotency_table(self.endpoint_url, table_name)
        return self.endpoint_url

    def stop(self) -> None:
        self._server.stop()


def create_idempotency_table(endpoint_url: str, table_name: str) -> None:
    """The table as template.yaml declares it: partition key `id`, TTL on `expiration`."""
    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106 - moto takes any key
    if table_name in client.list_tables()["TableNames"]:
        return
    client.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"},
    )
