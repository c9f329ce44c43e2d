"""The stack's deploy-time custom resources, served by DeployFunction (template.yaml).

DeployFunction runs outside the VPC: Secrets Manager, Lambda, RDS and CloudFormation's reply URL
(S3) are reachable there whatever state the stack's network is in, so a reply can always be sent.

* Custom::SchemaMigrations: on create and update, reads the password of the functions' database
  user (tickets_app) from its secret and invokes MigrateFunction (inside the VPC, the only
  function that signs in as the master user), which applies the migrations and sets that
  password. On delete, nothing: the schema goes with the database and its final snapshot.
* Custom::DeletionProtection: sets the cluster's deletion protection to the stack's parameter.
  It is the stack's last resource, so a first deploy that fails on the way rolls back with an
  unprotected cluster; should its own create fail, or a resource created beside it, the delete
  that the rollback sends lifts the protection again (ROLLBACK_IN_PROGRESS only: a `sam delete`
  of a protected stack stops at the cluster, as protection means).

The reply to CloudFormation is bounded (REPLY_ATTEMPTS PUTs of REPLY_TIMEOUT_SECONDS each), and
each step is bounded by the time Lambda leaves: the request never waits out CloudFormation's
hour. The resources' ServiceTimeout bounds it from CloudFormation's side too.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from tickets.observability import logger
from tickets.settings import settings

SCHEMA_PHYSICAL_ID = "tickets-schema"  # one stable id: an update re-runs the migrations in place
REPLY_ATTEMPTS = 3
REPLY_TIMEOUT_SECONDS = 10
REPLY_RETRY_SECONDS = 2
REPLY_MARGIN_SECONDS = 30  # left for the reply when a step runs out of time
REASON_LIMIT = 1000  # CloudFormation takes a response of 4 KiB at most
POLL_SECONDS = 5.0


class DeployStepFailed(Exception):
    """A deploy step failed; its message becomes the reason CloudFormation shows."""


def is_custom_resource_request(event: Any) -> bool:
    return isinstance(event, dict) and "RequestType" in event and "ResponseURL" in event


def _client(service: str, **config: Any) -> Any:
    """A boto3 client (tests replace this function)."""
    import boto3  # noqa: PLC0415 - only DeployFunction talks to these services
    from botocore.config import Config  # noqa: PLC0415

    client: Any = boto3.client(service, config=Config(**config) if config else None)  # type: ignore[call-overload]
    return client


# ---------------------------------------------------------------------------------------------
# The steps.


def run_migrations(budget_seconds: float) -> list[str]:
    """Has MigrateFunction apply the migrations and set the app role's password; returns what it applied."""
    config = settings()
    if not config.migrate_function_name or not config.app_db_secret_arn:
        raise DeployStepFailed("MIGRATE_FUNCTION_NAME and APP_DB_SECRET_ARN must be set")
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 - boto3, on first use only

    secret = parameters.get_secret(config.app_db_secret_arn, transform="json", force_fetch=True)
    password = str(secret["password"])
    # One attempt, waiting as long as MigrateFunction may run within our own budget: a retried
    # invocation would run the migrations twice at once (harmless, under their lock, but slow).
    client = _client("lambda", read_timeout=max(int(budget_seconds), 1), connect_timeout=10,
                     retries={"total_max_attempts": 1})
    response = client.invoke(FunctionName=config.migrate_function_name,
                             Payload=json.dumps({"app_role_password": password}).encode())
    result = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        message = result.get("errorMessage") if isinstance(result, dict) else result
        raise DeployStepFailed(f"MigrateFunction failed: {message}")
    return [str(name) for name in result["applied"]]


def set_deletion_protection(cluster_id: str, enabled: bool, *, deadline: float,
                            sleep: Callable[[float], None] = time.sleep) -> None:
    """Sets the cluster's deletion protection and waits until RDS reports it, retrying while the
    cluster is busy with another change (creating, modifying)."""
    from botocore.exceptions import ClientError  # noqa: PLC0415 - botocore, on first use only

    rds = _client("rds")
    while True:
        try:
            rds.modify_db_cluster(DBClusterIdentifier=cluster_id, DeletionProtection=enabled, ApplyImmediately=True)
            cluster = rds.describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"][0]
            if cluster["DeletionProtection"] == enabled:
                return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "InvalidDBClusterStateFault":
                raise
            logger.info("cluster busy; retrying", extra={"cluster": cluster_id, "error": str(exc)})
        if time.monotonic() + POLL_SECONDS > deadline:
            raise DeployStepFailed(f"deletion protection of {cluster_id} is not {enabled} yet; giving up")
        sleep(POLL_SECONDS)


def stack_status(stack_id: str) -> str:
    return str(_client("cloudformation").describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"])


# ---------------------------------------------------------------------------------------------
# The requests.


def _schema_migrations(event: dict[str, Any], budget: float) -> tuple[str, dict[str, str]]:
    if event["RequestType"] == "Delete":
        return event.get("PhysicalResourceId") or SCHEMA_PHYSICAL_ID, {}
    applied = run_migrations(budget)
    return SCHEMA_PHYSICAL_ID, {"Applied": ",".join(applied) or "none"}


def _deletion_protection(event: dict[str, Any], budget: float) -> tuple[str, dict[str, str]]:
    properties = event["ResourceProperties"]
    cluster_id = str(properties["ClusterIdentifier"])
    physical_id = f"{cluster_id}-deletion-protection"
    deadline = time.monotonic() + budget
    if event["RequestType"] == "Delete":
        if stack_status(event["StackId"]) == "ROLLBACK_IN_PROGRESS":  # a first deploy rolling back
            set_deletion_protection(cluster_id, False, deadline=deadline)
        return event.get("PhysicalResourceId") or physical_id, {}
    enabled = str(properties["Enabled"]).lower() == "true"
    set_deletion_protection(cluster_id, enabled, deadline=deadline)
    return physical_id, {"DeletionProtection": str(enabled).lower()}


_RESOURCES = {
    "Custom::SchemaMigrations": _schema_migrations,
    "Custom::DeletionProtection": _deletion_protection,
}


def handle(event: dict[str, Any], remaining_seconds: Callable[[], float]) -> None:
    """Runs one custom-resource request and replies to CloudFormation once, SUCCESS or FAILED."""
    physical_id = event.get("PhysicalResourceId") or f"{event['LogicalResourceId']}-failed"
    try:
        step = _RESOURCES.get(event["ResourceType"])
        if step is None:
            raise DeployStepFailed(f"no such custom resource type: {event['ResourceType']}")
        physical_id, data = step(event, remaining_seconds() - REPLY_MARGIN_SECONDS)
    except Exception as exc:
        logger.exception("custom resource failed", extra={"resource": event.get("LogicalResourceId")})
        reply(event, "FAILED", physical_id, reason=f"{type(exc).__name__}: {exc}")
        return
    reply(event, "SUCCESS", physical_id, data=data)


def reply(event: dict[str, Any], status: str, physical_id: str, *, data: dict[str, str] | None = None,
          reason: str = "", sleep: Callable[[float], None] = time.sleep) -> bool:
    """PUTs the outcome to the pre-signed URL CloudFormation gave; True once it was accepted.
    A bounded number of attempts: if none gets through, CloudFormation fails the resource after
    its ServiceTimeout, rather than this function retrying until Lambda stops it."""
    body = json.dumps({
        "Status": status,
        "Reason": (reason or f"See the log of {settings().function_name}")[:REASON_LIMIT],
        "PhysicalResourceId": physical_id,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": False,
        "Data": data or {},
    }).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",  # noqa: S310 - CloudFormation's https URL
                                     headers={"Content-Type": ""})  # the URL is signed without one
    for attempt in range(1, REPLY_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=REPLY_TIMEOUT_SECONDS):  # noqa: S310
                logger.info("replied to CloudFormation", extra={"status": status, "resource": physical_id})
                return True
        except (urllib.error.URLError, OSError) as exc:
            logger.warning("reply to CloudFormation failed", extra={"attempt": attempt, "error": str(exc)})
            if attempt < REPLY_ATTEMPTS:
                sleep(REPLY_RETRY_SECONDS)
    logger.error("no reply reached CloudFormation; it fails the resource after its ServiceTimeout")
    return False
