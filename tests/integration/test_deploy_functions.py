"""What only the deployed stack uses: the organizer authorizer with its Secrets Manager token,
IAM sign-in to RDS Proxy, and the migrations run as a CloudFormation custom resource."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
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


def custom_resource_event(request_type: str, url: str, physical_id: str | None = None) -> dict[str, Any]:
    event = {
        "RequestType": request_type, "ResponseURL": url,
        "StackId": f"arn:aws:cloudformation:us-east-1:000000000000:stack/tickets-prod/{uuid.uuid4()}",
        "RequestId": str(uuid.uuid4()), "LogicalResourceId": "SchemaMigrations",
        "ResourceType": "Custom::SchemaMigrations",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:000000000000:function:migrate",
                               "LayerVersion": "arn:aws:lambda:us-east-1:000000000000:layer:tickets:7"},
    }
    if physical_id:
        event["PhysicalResourceId"] = physical_id
    return event


def run_migrate(event: dict[str, Any], timeout_seconds: float = 120) -> Any:
    return load_handler("functions/migrate")(event, LambdaContext(function_name="MigrateFunction",
                                                                  timeout_seconds=timeout_seconds))


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
        cloudformation: CloudFormationReplies, empty_database: str) -> None:
    from tickets.store.migrate import function_files, migration_files

    run_migrate(custom_resource_event("Create", cloudformation.url))
    run_migrate(custom_resource_event("Update", cloudformation.url, "tickets-schema"))
    run_migrate(custom_resource_event("Delete", cloudformation.url, "tickets-schema"))
    create, update, delete = cloudformation.replies
    assert (create["Status"], create["PhysicalResourceId"], create["LogicalResourceId"]) == (
        "SUCCESS", "tickets-schema", "SchemaMigrations")
    assert create["Data"]["Applied"] == ",".join([version for version, _ in migration_files()]
                                                 + [f"functions/{name}" for name, _ in function_files()])
    assert (update["Status"], update["PhysicalResourceId"], update["Data"]["Applied"]) == (
        "SUCCESS", "tickets-schema", "none")
    assert (delete["Status"], delete["PhysicalResourceId"]) == ("SUCCESS", "tickets-schema")
    with psycopg.connect(empty_database) as conn:  # the schema stays: it goes with the database
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
        timeouts = conn.execute("SELECT setting FROM pg_settings WHERE name IN"
                                " ('statement_timeout', 'idle_in_transaction_session_timeout') ORDER BY name")
        assert [row[0] for row in timeouts] == ["30000", "5000"]  # from the role, in a new session


def test_unreachable_database_fails_the_deploy_before_lambda_times_out(
        cloudformation: CloudFormationReplies, settings_env: SettingsEnvironment) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings_env.setenv("DATABASE_URL", f"postgresql://tickets@127.0.0.1:{port}/tickets")
    run_migrate(custom_resource_event("Create", cloudformation.url), timeout_seconds=65)
    (reply,) = cloudformation.replies
    assert reply["Status"] == "FAILED" and "127.0.0.1" in reply["Reason"]


def test_migrate_by_hand_reports_what_it_applied(database_url: str) -> None:
    assert run_migrate({}) == {"applied": []}
