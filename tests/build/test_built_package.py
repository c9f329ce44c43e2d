"""What `sam build` produced runs as Lambda would run it: each function's folder and the layer's
python/ folder on the path and nothing else (no source tree, no virtualenv), under the runtime's
interpreter, handling the sample events of events/ against a real database and DynamoDB."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from localstage.lambda_runtime import ROOT
from localstage.seed import DEMO_ADMIN_TOKEN, DEMO_EVENT_ID, TABLE_NAMES, prepare_database
from localstage.template import _CloudFormationLoader

BUILD_DIR = Path(os.environ.get("SAM_BUILD_DIR", ROOT / ".aws-sam" / "build")).resolve()
LAMBDA_PYTHON = os.environ.get("LAMBDA_PYTHON", "python3.13")

# -I -S: no user site, no site-packages, no PYTHONPATH: only what Lambda would have.
RUNNER = """
import json, sys
function_dir, layer_dir, event_path = sys.argv[1:4]
sys.path[:0] = [function_dir, layer_dir]
import app
from types import SimpleNamespace
context = SimpleNamespace(function_name="built", memory_limit_in_mb=512, aws_request_id="built-1",
                          invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:built",
                          get_remaining_time_in_millis=lambda: 120000)
event = json.load(open(event_path)) if event_path != "-" else None
import psycopg, pydantic_core
out = {"psycopg_impl": psycopg.pq.__impl__, "psycopg_file": psycopg.pq.PGconn.__module__,
       "layer": [p for p in sys.path if p == layer_dir], "python": "%d.%d" % sys.version_info[:2]}
if event is not None:
    out["result"] = app.lambda_handler(event, context)
print(json.dumps(out, default=str))
"""


def built_template() -> dict[str, Any]:
    path = BUILD_DIR / "template.yaml"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make build` (sam build) first")
    return dict(yaml.load(path.read_text(), Loader=_CloudFormationLoader))


def functions() -> list[str]:
    resources = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CloudFormationLoader)["Resources"]
    return sorted(name for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function")


def run_built(function: str, event: str, env: dict[str, str]) -> dict[str, Any]:
    template = built_template()["Resources"]
    code_dir = BUILD_DIR / template[function]["Properties"]["CodeUri"]
    layer_dir = BUILD_DIR / template["TicketsLayer"]["Properties"]["ContentUri"] / "python"
    event_path = str(ROOT / "events" / event) if event != "-" else "-"
    completed = subprocess.run([LAMBDA_PYTHON, "-I", "-S", "-c", RUNNER, str(code_dir), str(layer_dir), event_path],
                               capture_output=True, text=True, env=env, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def lambda_env(database_url: str, dynamodb_endpoint: str) -> dict[str, str]:
    prepare_database(database_url)  # the demo event of the sample events, even after tests that emptied the tables
    return {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": "UTC",
        "DATABASE_URL": database_url, "IDEMPOTENCY_TABLE": TABLE_NAMES["IdempotencyTable"],
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint, "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "TICKETS_ADMIN_TOKEN": DEMO_ADMIN_TOKEN, "PAYMENT_PROVIDER": "test",
        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_SERVICE_NAME": "tickets",
        "AWS_LAMBDA_FUNCTION_NAME": "built",
    }


@pytest.mark.parametrize("function", functions())
def test_every_built_function_imports_with_the_binary_psycopg(function: str, lambda_env: dict[str, str]) -> None:
    loaded = run_built(function, "-", lambda_env)
    assert loaded["python"] == built_template()["Globals"]["Function"]["Runtime"].removeprefix("python")
    assert loaded["psycopg_impl"] == "binary", loaded  # the compiled libpq wrapper, not the pure-Python one
    assert loaded["layer"]


@pytest.mark.parametrize(("function", "event", "status"), [
    ("HealthFunction", "health.json", 200),
    ("AvailabilityFunction", "availability.json", 200),
    ("ReserveFunction", "reserve.json", 201),
    ("EventsFunction", "create_event.json", 201),
])
def test_built_functions_handle_the_sample_events(function: str, event: str, status: int,
                                                  lambda_env: dict[str, str]) -> None:
    result = run_built(function, event, lambda_env)["result"]
    assert result["statusCode"] == status, result
    if function == "AvailabilityFunction":
        assert json.loads(result["body"])["event_id"] == DEMO_EVENT_ID


def test_built_authorizer_and_expiry_handle_their_events(lambda_env: dict[str, str]) -> None:
    assert run_built("AuthorizerFunction", "authorizer.json", lambda_env)["result"] == {
        "isAuthorized": True, "context": {"role": "organizer"}}
    assert "expired" in run_built("ExpireFunction", "expire.json", lambda_env)["result"]
