"""The idempotency records' table (DynamoDB, written by the Powertools idempotency utility).

Built on the first request that needs it, not at import: the persistence layer brings boto3 and
botocore, which a cold start of a function that never reaches the table should not load.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from tickets.settings import settings

if TYPE_CHECKING:
    from botocore.config import Config

    from tickets.store.retry_safe_persistence import RetrySafeDynamoDBPersistenceLayer


def dynamodb_client_config() -> Config:
    """A slow or unreachable table must cost seconds, not botocore's 60 s defaults: two attempts of at
    most 1 s to connect and 2 s to answer, so the function still answers 503 within its timeout."""
    from botocore.config import Config  # noqa: PLC0415 - deferred, as the module says

    return Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2})


@functools.cache
def persistence_store() -> RetrySafeDynamoDBPersistenceLayer:
    """The environment's persistence layer (and its DynamoDB client), made on first use and kept."""
    from tickets.store.retry_safe_persistence import RetrySafeDynamoDBPersistenceLayer  # noqa: PLC0415

    return RetrySafeDynamoDBPersistenceLayer(table_name=settings().idempotency_table,
                                             boto_config=dynamodb_client_config())


def ready() -> bool:
    """True when the table answers."""
    try:
        store = persistence_store()
        store.client.describe_table(TableName=store.table_name)
    except Exception:
        return False
    return True
