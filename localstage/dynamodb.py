"""A local DynamoDB: moto in server mode, with the idempotency table of template.yaml."""

from __future__ import annotations

import boto3
from moto.server import ThreadedMotoServer

from localstage.postgres import free_port

IDEMPOTENCY_TABLE = "tickets-idempotency"


class LocalDynamoDB:
    def __init__(self) -> None:
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
