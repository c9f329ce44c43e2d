"""Retries with an Idempotency-Key: same response, no repeated work."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyItemAlreadyExistsError

from localstage.runtime import Backends
from tests.support.api import Api
from tickets.store.idempotency_records import dynamodb_client_config
from tickets.store.retry_safe_persistence import RetrySafeDynamoDBPersistenceLayer


def test_retry_returns_the_first_response(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    first = api.reserve(event["event_id"], 2, key=key)
    second = api.reserve(event["event_id"], 2, key=key)
    assert (second.status, second.body) == (first.status, first.body)
    assert db.execute("SELECT count(*) FROM reservations").fetchone()[0] == 1


def test_a_4xx_is_kept(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    sold_out = api.reserve(event["event_id"], 6, key=key + "a")
    api.reserve(event["event_id"], 6, key=key + "b")  # refused: only 4 left
    refused = api.reserve(event["event_id"], 6, key=key + "b")
    assert refused.status == 409 and refused.error_code == "insufficient_inventory"
    api.request("DELETE", f"/reservations/{sold_out.body['reservation_id']}")
    # Seats are free now, but the retry still gets the first answer.
    assert api.reserve(event["event_id"], 6, key=key + "b").body == refused.body


def test_same_key_different_body_is_422(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    api.reserve(event["event_id"], 1, key=key)
    reused = api.reserve(event["event_id"], 2, key=key)
    assert reused.status == 422 and reused.error_code == "idempotency_key_reused"
    assert db.execute("SELECT count(*) FROM reservations").fetchone()[0] == 1


def test_same_key_on_another_route_is_independent(api: Api, key: str) -> None:
    first = api.create_event()
    second = api.create_event()
    assert api.reserve(first["event_id"], 1, key=key).status == 201
    assert api.reserve(second["event_id"], 1, key=key).status == 201


def test_confirm_retry_charges_once(api: Api, key: str, db: Any) -> None:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 1, key=key).body
    first = api.confirm(hold["reservation_id"], key=key + "c")
    again = api.confirm(hold["reservation_id"], key=key + "c")
    assert first.status == 200 and again.body == first.body
    assert db.execute("SELECT count(*) FROM payments").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1


def test_cancel_with_an_optional_key(api: Api, key: str) -> None:
    event = api.create_event()
    hold = api.reserve(event["event_id"], 1, key=key).body
    path = f"/reservations/{hold['reservation_id']}"
    with_key = api.request("DELETE", path, headers={"Idempotency-Key": key + "x"})
    assert with_key.status == 200
    assert api.request("DELETE", path, headers={"Idempotency-Key": key + "x"}).body == with_key.body


def lost_first_answer(layer: DynamoDBPersistenceLayer) -> None:
    """Makes botocore send the layer's first PutItem again, as after a read timeout on a write that
    went through: the answer of the first attempt is dropped and the same request is retried."""
    retried: list[int] = []

    def retry_once(attempts: int, **_: Any) -> float | None:
        retried.append(attempts)
        return 0 if len(retried) == 1 else None

    layer.client.meta.events.register_first("needs-retry.dynamodb.PutItem", retry_once)


def save_inprogress(layer: DynamoDBPersistenceLayer, key: str) -> None:
    layer.configure(IdempotencyConfig(event_key_jmespath="key"), function_name="retry_test")
    layer.save_inprogress(data={"key": key}, remaining_time_in_millis=10_000)


@pytest.mark.parametrize("layer_class", [DynamoDBPersistenceLayer, RetrySafeDynamoDBPersistenceLayer])
def test_a_put_retried_after_its_answer_was_lost_is_not_in_progress(
        layer_class: type[DynamoDBPersistenceLayer], backends: Backends, key: str) -> None:
    table = backends.tables["IdempotencyTable"]
    layer = layer_class(table_name=table, boto_config=dynamodb_client_config())
    lost_first_answer(layer)
    if layer_class is DynamoDBPersistenceLayer:
        # Powertools' own layer takes its own record for another caller's: request_in_progress.
        with pytest.raises(IdempotencyItemAlreadyExistsError):
            save_inprogress(layer, key)
        return
    save_inprogress(layer, key)
    # Another caller with the same key, meanwhile, is still refused.
    other = RetrySafeDynamoDBPersistenceLayer(table_name=table, boto_config=dynamodb_client_config())
    with pytest.raises(IdempotencyItemAlreadyExistsError):
        save_inprogress(other, key)
