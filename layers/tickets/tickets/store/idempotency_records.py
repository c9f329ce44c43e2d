"""The idempotency records' table (DynamoDB, written by the Powertools idempotency utility)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyItemAlreadyExistsError
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from botocore.config import Config

from tickets.settings import settings

# A slow or unreachable table must cost seconds, not botocore's 60 s defaults: two attempts of at
# most 1 s to connect and 2 s to answer, so the function still answers 503 within its timeout.
DYNAMODB_CLIENT = Config(connect_timeout=1, read_timeout=2,
                         retries={"mode": "standard", "total_max_attempts": 2})
WRITER_ATTRIBUTE = "writer"  # which put wrote an INPROGRESS record


class RetrySafeDynamoDBPersistenceLayer(DynamoDBPersistenceLayer):
    """Powertools' DynamoDB layer, except that a conditional put retried by botocore after its
    answer was lost (a read timeout on a write that went through) finds its own record and goes on.

    The stock layer takes that record for another caller's and answers request_in_progress to a
    buyer's first call, then again to every retry until the record's in-progress lease ends. Each
    put is marked with a fresh writer id (the same for botocore's attempts of one call): a
    conditional failure on a record bearing our own id is our own write.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._calls = threading.local()
        self.client.meta.events.register("before-parameter-build.dynamodb.PutItem", self._mark_put)

    def _mark_put(self, params: dict[str, Any], **_: Any) -> None:
        writer = getattr(self._calls, "writer", None)
        if writer is not None:
            params["Item"][WRITER_ATTRIBUTE] = {"S": writer}

    def _put_record(self, data_record: DataRecord) -> None:
        self._calls.writer = writer = uuid.uuid4().hex
        try:
            super()._put_record(data_record)
        except IdempotencyItemAlreadyExistsError as exc:
            found = getattr(exc.__cause__, "response", {}).get("Item", {})
            if found.get(WRITER_ATTRIBUTE, {}).get("S") != writer:
                raise
        finally:
            self._calls.writer = None


persistence_store = RetrySafeDynamoDBPersistenceLayer(table_name=settings().idempotency_table,
                                                      boto_config=DYNAMODB_CLIENT)


def ready() -> bool:
    """True when the table answers."""
    try:
        persistence_store.client.describe_table(TableName=persistence_store.table_name)
    except Exception:
        return False
    return True
