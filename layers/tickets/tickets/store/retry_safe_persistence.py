"""The DynamoDB persistence layer of the idempotency records, safe against botocore's retries.

Imported on first use (tickets.store.idempotency_records.persistence_store): Powertools' DynamoDB
layer brings boto3 and botocore, which no cold start needs.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyItemAlreadyExistsError
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

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
