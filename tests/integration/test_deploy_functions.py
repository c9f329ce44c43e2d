"""What only the deployed stack uses: the organizer authorizer with its Secrets Manager token,
IAM sign-in to RDS Proxy, and the stack's custom resources (DeployFunction): the migrations,
run by MigrateFunction with the app role's password, and the deletion protection switch."""

from __future__ import annotations

import datetime
import io
import ipaddress
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import psycopg
import pytest
from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from localstage.lambda_runtime import LambdaContext, http_event, load_handler
from tests.conftest import SettingsEnvironment
from tests.support.api import Api

SECRET_TOKEN = "secret-manager-token-0123456789abcdef"


@pytest.fixture
def token_secret(dynamodb_endpoint: str, monkeypatch: pytest.MonkeyPatch,
                 settings_env: SettingsEnvironment) -> Iterator[str]:
    """The organizer token in (moto's) Secrets Manager, named by ADMIN_TOKEN_SECRET_ARN as on AWS."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", dynamodb_endpoint)  # one moto server, every service
    client = boto3.client("secretsmanager", region_name="us-east-1")
    arn = client.create_secret(Name=f"tickets-admin-{uuid.uuid4()}", SecretString=SECRET_TOKEN)["ARN"]
    settings_env.setenv("ADMIN_TOKEN_SECRET_ARN", arn)
    parameters.clear_caches()
    yield arn
    parameters.clear_caches()


def authorize(headers: dict[str, str]) -> Any:
    event = http_event("POST", "/events", headers=headers, body={})
    event.update(type="REQUEST", routeArn="arn:aws:execute-api:us-east-1:0:api/prod/POST/events")
    return load_handler("functions/authorizer")(event, LambdaContext(function_name="AuthorizerFunction"))


@pytest.mark.parametrize(("headers", "role"), [
    ({"authorization": f"Bearer {SECRET_TOKEN}"}, "organizer"),
    ({"authorization": f"bearer  {SECRET_TOKEN} "}, "organizer"),
    ({"authorization": "Bearer test-admin-token-0123456789"}, "anonymous"),  # the local token is not the secret
    ({"authorization": f"Basic {SECRET_TOKEN}"}, "anonymous"),
    ({"authorization": "Bearer "}, "anonymous"),
    ({}, "anonymous"),
])
def test_authorizer_vouches_only_for_the_secret_token(token_secret: str, headers: dict[str, str],
                                                      role: str) -> None:
    assert authorize(headers) == {"isAuthorized": True, "context": {"role": role}}


def test_organizer_routes_take_the_secret_token_through_the_authorizer(token_secret: str, api: Api) -> None:
    body = {"name": "G", "starts_at": "2030-01-01T00:00:00Z", "tiers": [{"name": "GA", "capacity": 1, "price": 0}]}
    refused = api.request("POST", "/events", body=body, admin=True)  # the local token, not the secret's
    assert (refused.status, refused.error_code) == (401, "unauthorized")
    created = api.request("POST", "/events", body=body, headers={"Authorization": f"Bearer {SECRET_TOKEN}"})
    assert created.status == 201, created.text


def test_organizer_route_fails_closed_without_the_authorizer(api: Api) -> None:
    """A route deployed without its authorizer refuses everyone, even with the right token."""
    event = http_event("POST", "/events", route_key="POST /events",
                       headers={"authorization": "Bearer test-admin-token-0123456789"},
                       body={"name": "G", "starts_at": "2030-01-01T00:00:00Z",
                             "tiers": [{"name": "GA", "capacity": 1, "price": 0}]})
    response = api.invoke(event, "EventsFunction")
    assert (response.status, response.error_code) == (401, "unauthorized")


def test_rds_proxy_sign_in_uses_an_iam_token_over_verified_tls(settings_env: SettingsEnvironment) -> None:
    import certifi

    from tickets.store import db

    settings_env.delenv("DATABASE_URL")
    settings_env.setenv("DB_HOST", "tickets-prod.proxy-abc123.us-east-1.rds.amazonaws.com")
    settings_env.setenv("DB_USER", "tickets")
    info = psycopg.conninfo.conninfo_to_dict(db.conninfo())
    assert info["host"] == "tickets-prod.proxy-abc123.us-east-1.rds.amazonaws.com"
    assert (info["port"], info["dbname"], info["user"]) == ("5432", "tickets", "tickets")
    assert (info["sslmode"], info["sslrootcert"]) == ("verify-full", certifi.where())
    token = str(info["password"])
    assert token.startswith("tickets-prod.proxy-abc123.us-east-1.rds.amazonaws.com:5432/?")
    query = parse_qs(urlsplit(f"https://{token}").query)
    assert query["Action"] == ["connect"] and query["DBUser"] == ["tickets"]
    assert query["X-Amz-Expires"] == ["900"] and "X-Amz-Signature" in query


# ---------------------------------------------------------------------------------------------
# Migrations as a custom resource: CloudFormation sends the event and waits for a PUT of the
# outcome to a pre-signed HTTPS URL. Here that URL is a local HTTPS server with its own CA.


class CloudFormationReplies(HTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReplyHandler)
        self.replies: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"https://localhost:{self.server_address[1]}/reply?X-Amz-Signature=abc"


class _ReplyHandler(BaseHTTPRequestHandler):
    server: CloudFormationReplies

    def do_PUT(self) -> None:
        length = int(self.headers["content-length"])
        self.server.replies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def cloudformation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudFormationReplies]:
    cert, key = _self_signed(tmp_path)
    server = CloudFormationReplies()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the handler trusts this CA as it trusts Amazon's on AWS
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def custom_resource_event(request_type: str, url: str, physical_id: str | None = None, *,
                          resource_type: str = "Custom::SchemaMigrations",
                          properties: dict[str, str] | None = None) -> dict[str, Any]:
    logical_id = {"Custom::SchemaMigrations": "SchemaMigrations",
                  "Custom::DeletionProtection": "DatabaseDeletionProtectionSwitch"}.get(resource_type, "Other")
    event = {
        "RequestType": request_type, "ResponseURL": url,
        "StackId": f"arn:aws:cloudformation:us-east-1:000000000000:stack/tickets-prod/{uuid.uuid4()}",
        "RequestId": str(uuid.uuid4()), "LogicalResourceId": logical_id, "ResourceType": resource_type,
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:000000000000:function:deploy",
                               **(properties or {"LayerVersion": "arn:aws:lambda:us-east-1:000000000000:layer:t:7"})},
    }
    if physical_id:
        event["PhysicalResourceId"] = physical_id
    return event


def run_deploy(event: dict[str, Any], timeout_seconds: float = 120) -> Any:
    return load_handler("functions/deploy")(event, LambdaContext(function_name="DeployFunction",
                                                                timeout_seconds=timeout_seconds))


def run_migrate(event: dict[str, Any], timeout_seconds: float = 120) -> Any:
    return load_handler("functions/migrate")(event, LambdaContext(function_name="MigrateFunction",
                                                                  timeout_seconds=timeout_seconds))


class FakeLambda:
    """Lambda's Invoke, running MigrateFunction's handler in this process as Lambda would."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self.payloads: list[dict[str, Any]] = []

    def invoke(self, FunctionName: str, Payload: bytes) -> dict[str, Any]:  # noqa: N803 - boto3's names
        assert FunctionName == "tickets-prod-MigrateFunction"
        payload = json.loads(Payload)
        self.payloads.append(payload)
        try:
            result = run_migrate(payload, self.timeout_seconds)
        except Exception as exc:
            error = {"errorMessage": str(exc), "errorType": type(exc).__name__}
            return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(json.dumps(error).encode())}
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(result).encode())}


class FakeRds:
    def __init__(self, busy: int = 0) -> None:
        self.protected = False
        self.busy = busy  # how many modify calls find the cluster busy
        self.calls: list[bool] = []

    def modify_db_cluster(self, *, DBClusterIdentifier: str, DeletionProtection: bool,  # noqa: N803
                          ApplyImmediately: bool) -> None:  # noqa: N803
        assert DBClusterIdentifier == "tickets-prod-cluster" and ApplyImmediately
        if self.busy:
            self.busy -= 1
            raise ClientError({"Error": {"Code": "InvalidDBClusterStateFault", "Message": "busy"}}, "ModifyDBCluster")
        self.calls.append(DeletionProtection)
        self.protected = DeletionProtection

    def describe_db_clusters(self, DBClusterIdentifier: str) -> dict[str, Any]:  # noqa: N803
        return {"DBClusters": [{"DBClusterIdentifier": DBClusterIdentifier, "DeletionProtection": self.protected}]}


class FakeCloudFormation:
    def __init__(self, status: str) -> None:
        self.status = status

    def describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803
        return {"Stacks": [{"StackId": StackName, "StackStatus": self.status}]}


APP_PASSWORD = "app-role-password-from-the-secret-0123456789"


@pytest.fixture
def aws(dynamodb_endpoint: str, monkeypatch: pytest.MonkeyPatch,
        settings_env: SettingsEnvironment) -> Iterator[dict[str, Any]]:
    """DeployFunction's AWS: the app role's secret in (moto's) Secrets Manager, and Lambda, RDS and
    CloudFormation as fakes. Swap entries to change them."""
    from tickets.edge import cloudformation

    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", dynamodb_endpoint)
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    arn = secrets.create_secret(Name=f"tickets-app-{uuid.uuid4()}",
                                SecretString=json.dumps({"username": "tickets_app", "password": APP_PASSWORD}))["ARN"]
    settings_env.setenv("APP_DB_SECRET_ARN", arn)
    settings_env.setenv("MIGRATE_FUNCTION_NAME", "tickets-prod-MigrateFunction")
    clients: dict[str, Any] = {"lambda": FakeLambda(120), "rds": FakeRds(),
                               "cloudformation": FakeCloudFormation("CREATE_IN_PROGRESS")}
    monkeypatch.setattr(cloudformation, "_client", lambda service, **config: clients[service])
    monkeypatch.setattr(cloudformation, "POLL_SECONDS", 0.01)
    parameters.clear_caches()
    yield clients
    parameters.clear_caches()


@pytest.fixture
def empty_database(database_url: str, settings_env: SettingsEnvironment) -> Iterator[str]:
    """A new, empty database on the test cluster, as a fresh stack's cluster has."""
    name = f"fresh_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(database_url, dbname=name)
    settings_env.setenv("DATABASE_URL", url)
    yield url
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_deploy_applies_the_migrations_once_and_replies_to_cloudformation(
        cloudformation: CloudFormationReplies, empty_database: str, aws: dict[str, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    from tickets.store.migrate import function_files, migration_files

    run_deploy(custom_resource_event("Create", cloudformation.url))
    run_deploy(custom_resource_event("Update", cloudformation.url, "tickets-schema"))
    run_deploy(custom_resource_event("Delete", cloudformation.url, "tickets-schema"))
    create, update, delete = cloudformation.replies
    assert (create["Status"], create["PhysicalResourceId"], create["LogicalResourceId"]) == (
        "SUCCESS", "tickets-schema", "SchemaMigrations")
    assert create["Data"]["Applied"] == ",".join([version for version, _ in migration_files()]
                                                 + [f"functions/{name}" for name, _ in function_files()])
    assert (update["Status"], update["PhysicalResourceId"], update["Data"]["Applied"]) == (
        "SUCCESS", "tickets-schema", "none")
    assert (delete["Status"], delete["PhysicalResourceId"]) == ("SUCCESS", "tickets-schema")
    assert aws["lambda"].payloads == [{"app_role_password": APP_PASSWORD}] * 2  # the delete runs nothing
    assert APP_PASSWORD not in capsys.readouterr().out  # never logged
    with psycopg.connect(empty_database) as conn:  # the schema stays: it goes with the database
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
        verifier = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'tickets_app'").fetchone()
        assert verifier is not None and str(verifier[0]).startswith("SCRAM-SHA-256$")
    with psycopg.connect(psycopg.conninfo.make_conninfo(empty_database, user="tickets_app")) as conn:
        timeouts = conn.execute("SELECT setting FROM pg_settings WHERE name IN"
                                " ('statement_timeout', 'idle_in_transaction_session_timeout') ORDER BY name")
        assert [row[0] for row in timeouts] == ["30000", "5000"]  # from the role, in a new session


def test_unreachable_database_fails_the_deploy_before_lambda_times_out(
        cloudformation: CloudFormationReplies, settings_env: SettingsEnvironment, aws: dict[str, Any]) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings_env.setenv("DATABASE_URL", f"postgresql://tickets@127.0.0.1:{port}/tickets")
    aws["lambda"] = FakeLambda(timeout_seconds=65)  # MigrateFunction keeps 60 s to report a failure
    run_deploy(custom_resource_event("Create", cloudformation.url))
    (reply,) = cloudformation.replies
    assert reply["Status"] == "FAILED" and "MigrateFunction failed" in reply["Reason"]
    assert "127.0.0.1" in reply["Reason"]


def test_the_reply_to_cloudformation_gives_up_after_a_few_attempts() -> None:
    """With no route to CloudFormation's URL, the reply stops trying instead of looping until Lambda
    stops it (and CloudFormation waits out the resource's ServiceTimeout, not an hour)."""
    from tickets.edge import cloudformation

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    waits: list[float] = []
    event = custom_resource_event("Delete", f"https://127.0.0.1:{port}/reply", "tickets-schema")
    started = time.monotonic()
    assert cloudformation.reply(event, "SUCCESS", "tickets-schema", sleep=waits.append) is False
    assert len(waits) == cloudformation.REPLY_ATTEMPTS - 1
    assert time.monotonic() - started < cloudformation.REPLY_ATTEMPTS * cloudformation.REPLY_TIMEOUT_SECONDS


def protection_event(request_type: str, url: str, enabled: str = "true") -> dict[str, Any]:
    return custom_resource_event(request_type, url, None if request_type == "Create" else "tickets-prod-cluster-dp",
                                 resource_type="Custom::DeletionProtection",
                                 properties={"ClusterIdentifier": "tickets-prod-cluster", "Enabled": enabled})


def test_deletion_protection_is_switched_on_last_and_lifted_only_when_a_create_rolls_back(
        cloudformation: CloudFormationReplies, aws: dict[str, Any]) -> None:
    rds = aws["rds"] = FakeRds(busy=2)  # a cluster still settling refuses changes for a while
    run_deploy(protection_event("Create", cloudformation.url))
    assert rds.calls == [True] and rds.protected
    run_deploy(protection_event("Update", cloudformation.url, enabled="false"))
    assert rds.calls == [True, False]
    run_deploy(protection_event("Update", cloudformation.url, enabled="true"))
    aws["cloudformation"] = FakeCloudFormation("DELETE_IN_PROGRESS")  # sam delete: protection holds
    run_deploy(protection_event("Delete", cloudformation.url))
    assert rds.calls == [True, False, True] and rds.protected
    aws["cloudformation"] = FakeCloudFormation("ROLLBACK_IN_PROGRESS")  # a failed first deploy
    run_deploy(protection_event("Delete", cloudformation.url))
    assert rds.calls == [True, False, True, False] and not rds.protected
    assert [reply["Status"] for reply in cloudformation.replies] == ["SUCCESS"] * 5
    assert cloudformation.replies[0]["PhysicalResourceId"] == "tickets-prod-cluster-deletion-protection"


def test_an_unknown_custom_resource_fails_with_a_reason(cloudformation: CloudFormationReplies,
                                                        aws: dict[str, Any]) -> None:
    run_deploy(custom_resource_event("Create", cloudformation.url, resource_type="Custom::Other"))
    (reply,) = cloudformation.replies
    assert reply["Status"] == "FAILED" and "Custom::Other" in reply["Reason"]
    assert reply["PhysicalResourceId"] == "Other-failed"


def test_migrations_by_hand_report_what_they_applied(database_url: str, aws: dict[str, Any]) -> None:
    assert run_migrate({}) == {"applied": []}
    assert run_deploy({}) == {"applied": []}
    assert aws["lambda"].payloads == [{"app_role_password": APP_PASSWORD}]
