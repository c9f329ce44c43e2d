"""The local DynamoDB's own process answers as moto does: its speed-ups (a query reads only its
partition, item calls answered as plain JSON) change no answer. Each case runs against the stage's
moto process and against moto in this process, unchanged, and the parsed answers must be equal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from localstage.dynamodb import LocalDynamoDB

pytestmark = pytest.mark.stage

TABLE = {"AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
         "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
         "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True}}
CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "local", "aws_secret_access_key": "local"}


@pytest.fixture(scope="module")
def stage_client() -> Iterator[Any]:
    local = LocalDynamoDB()
    local.start({"q": TABLE})
    try:
        yield boto3.client("dynamodb", endpoint_url=local.endpoint_url, **CREDENTIALS)
    finally:
        local.stop()


def _fill(client: Any) -> None:
    for n in range(40):
        client.put_item(TableName="q", Item={"pk": {"S": f"E#{n % 3}"}, "sk": {"S": f"t{n:03d}"}, "n": {"N": str(n)},
                                             "f": {"N": "1.5"}, "tags": {"L": [{"S": "a"}, {"N": "2"}]},
                                             "m": {"M": {"x": {"BOOL": True}, "y": {"NULL": True}}}})
    for lane in range(3):
        client.update_item(TableName="q", Key={"pk": {"S": f"N#{lane}"}, "sk": {"S": "P"}},
                           UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": {"N": "1"}})


def _calls(client: Any) -> list[Any]:
    def answer(call: Callable[[], Any]) -> Any:
        try:
            found = call()
        except ClientError as error:
            return ("error", error.response["Error"]["Code"])
        found.pop("ResponseMetadata", None)
        return found

    key = {"pk": {"S": "E#1"}, "sk": {"S": "t004"}}
    return [
        answer(lambda: client.get_item(TableName="q", Key=key, ConsistentRead=True)),
        answer(lambda: client.get_item(TableName="q", Key={"pk": {"S": "E#9"}, "sk": {"S": "none"}})),
        answer(lambda: client.put_item(TableName="q", Item={**key, "n": {"N": "0"}},
                                       ConditionExpression="attribute_not_exists(pk)")),
        answer(lambda: client.put_item(TableName="q", Item={"pk": {"S": "E#5"}, "sk": {"S": "new"}},
                                       ConditionExpression="attribute_not_exists(pk)", ReturnValues="ALL_OLD")),
        answer(lambda: client.update_item(TableName="q", Key={"pk": {"S": "N#1"}, "sk": {"S": "P"}},
                                          UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": {"N": "1"}},
                                          ReturnValues="UPDATED_NEW")),
        answer(lambda: client.update_item(TableName="q", Key=key, UpdateExpression="SET a = if_not_exists(a, :a)",
                                          ConditionExpression="attribute_exists(pk)",
                                          ExpressionAttributeValues={":a": {"N": "7.25"}}, ReturnValues="ALL_NEW")),
        answer(lambda: client.query(TableName="q", KeyConditionExpression="pk = :pk",
                                    ExpressionAttributeValues={":pk": {"S": "E#2"}})),
        answer(lambda: client.query(TableName="q", KeyConditionExpression="pk = :pk", Limit=5,
                                    ExclusiveStartKey={"pk": {"S": "E#0"}, "sk": {"S": "t009"}},
                                    ExpressionAttributeValues={":pk": {"S": "E#0"}})),
        answer(lambda: client.query(TableName="q", KeyConditionExpression="pk = :pk AND sk BETWEEN :a AND :b",
                                    ConsistentRead=True, ScanIndexForward=False,
                                    ExpressionAttributeValues={":pk": {"S": "E#1"}, ":a": {"S": "t010"},
                                                               ":b": {"S": "t030"}})),
        answer(lambda: client.query(TableName="q", KeyConditionExpression="pk = :pk",
                                    ExpressionAttributeValues={":pk": {"S": "nothing"}})),
        answer(lambda: client.batch_get_item(RequestItems={"q": {"Keys": [key, {"pk": {"S": "N#0"}, "sk": {"S": "P"}},
                                                                          {"pk": {"S": "X"}, "sk": {"S": "X"}}],
                                                                 "ConsistentRead": True}})),
        answer(lambda: client.batch_write_item(RequestItems={"q": [{"PutRequest": {"Item": {
            "pk": {"S": "R#1"}, "sk": {"S": "-"}, "firsts": {"M": {"3": {"N": "12"}}}}}}]})),
        answer(lambda: client.delete_item(TableName="q", Key={"pk": {"S": "R#1"}, "sk": {"S": "-"}},
                                          ReturnValues="ALL_OLD")),
        answer(lambda: client.get_item(TableName="missing", Key=key)),
    ]


def test_the_stage_moto_answers_as_moto_does(stage_client: Any) -> None:
    _fill(stage_client)
    from_stage = _calls(stage_client)
    with mock_aws():
        # moto's mock answers AWS's own address (the tests export the stage's in AWS_ENDPOINT_URL_DYNAMODB)
        reference = boto3.client("dynamodb", endpoint_url="https://dynamodb.us-east-1.amazonaws.com", **CREDENTIALS)
        reference.create_table(TableName="q", KeySchema=TABLE["KeySchema"],
                               AttributeDefinitions=TABLE["AttributeDefinitions"], BillingMode="PAY_PER_REQUEST")
        _fill(reference)
        expected = _calls(reference)
    assert from_stage == expected
    assert from_stage[0]["Item"]["n"] == {"N": "4"} and from_stage[2] == ("error", "ConditionalCheckFailedException")
    assert len(from_stage[6]["Items"]) == 13 and from_stage[7]["Count"] == 5
