"""The functions' settings: every environment variable the layer reads, in one model, read once.

template.yaml sets them on AWS; the local stage and the tests set DATABASE_URL and
TICKETS_ADMIN_TOKEN instead of the proxy and the secret. (Powertools and boto3 read their own
variables: POWERTOOLS_*, AWS_*.)
"""

from __future__ import annotations

import functools
import os

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # Where PostgreSQL is: a URL locally; on AWS the RDS Proxy, signed in to with an IAM token.
    database_url: str | None = Field(None, alias="DATABASE_URL")
    db_host: str | None = Field(None, alias="DB_HOST")
    db_port: int = Field(5432, alias="DB_PORT")
    db_name: str = Field("tickets", alias="DB_NAME")
    db_user: str = Field("tickets", alias="DB_USER")
    idempotency_table: str = Field("tickets-idempotency", alias="IDEMPOTENCY_TABLE")
    payment_provider: str = Field("test", alias="PAYMENT_PROVIDER")
    # The organizer token: a Secrets Manager secret on AWS, the value itself locally.
    admin_token_secret_arn: str | None = Field(None, alias="ADMIN_TOKEN_SECRET_ARN")
    admin_token: str = Field("", alias="TICKETS_ADMIN_TOKEN")
    # The waiting room: its DynamoDB table, and the key admission tokens are signed with (a Secrets
    # Manager secret on AWS, the value itself locally).
    queue_table: str = Field("tickets-queue", alias="QUEUE_TABLE")
    admission_secret_arn: str | None = Field(None, alias="ADMISSION_SECRET_ARN")
    admission_secret: str = Field("", alias="TICKETS_ADMISSION_SECRET")
    function_name: str = Field("tickets", alias="AWS_LAMBDA_FUNCTION_NAME")
    # DeployFunction only: the function that applies the migrations inside the VPC, and the
    # secret holding the password of the functions' database user (tickets_app).
    migrate_function_name: str | None = Field(None, alias="MIGRATE_FUNCTION_NAME")
    app_db_secret_arn: str | None = Field(None, alias="APP_DB_SECRET_ARN")


# The variable names, for the tools that write or check an environment (the local stage, the tests).
VARIABLES: tuple[str, ...] = tuple(str(field.alias) for field in Settings.model_fields.values())


@functools.cache
def settings() -> Settings:
    """Read once per execution environment (the environment does not change under a running function)."""
    return Settings.model_validate(dict(os.environ))
