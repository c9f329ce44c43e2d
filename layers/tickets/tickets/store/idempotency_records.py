"""The idempotency records' table (DynamoDB, written by the Powertools idempotency utility)."""

from __future__ import annotations

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from botocore.config import Config

from tickets.settings import settings

# A slow or unreachable table must cost seconds, not botocore's 60 s defaults: two attempts of at
# most 1 s to connect and 2 s to answer, so the function still answers 503 within its timeout.
DYNAMODB_CLIENT = Config(connect_timeout=1, read_timeout=2,
                         retries={"mode": "standard", "total_max_attempts": 2})

persistence_store = DynamoDBPersistenceLayer(table_name=settings().idempotency_table, boto_config=DYNAMODB_CLIENT)


def ready() -> bool:
    """True when the table answers."""
    try:
        persistence_store.client.describe_table(TableName=persistence_store.table_name)
    except Exception:
        return False
    return True
