"""The idempotency records' table (DynamoDB, written by the Powertools idempotency utility)."""

from __future__ import annotations

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from tickets.settings import settings

persistence_store = DynamoDBPersistenceLayer(table_name=settings().idempotency_table)


def ready() -> bool:
    """True when the table answers."""
    try:
        persistence_store.client.describe_table(TableName=persistence_store.table_name)
    except Exception:
        return False
    return True
