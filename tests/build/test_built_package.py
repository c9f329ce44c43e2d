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

# -I -S: no user site, no site-packages, no PYTHONPATH: only what Lambda would have. -B: nothing written
# into the artifact (Lambda's folders are read-only), so it runs on the bytecode `make build` shipped.
RUNNER = """
import json, sys
function_dir, layer_dir, event_path = sys.argv[1:4]
sys.path[:0] = [function_dir, layer_dir]
import app
loaded_at_import = sorted(sys.modules)
from types import SimpleNamespace
context = SimpleNamespace(function_name="built", memory_limit_in_mb=512, aws_request_id="built-1",
                          invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:built",
                          get_remaining_time_in_millis=lambda: 120000)
event = json.load(open(event_path)) if event_path != "-" else None
import psycopg, pydantic_core
out = {"psycopg_impl": psycopg.pq.__impl__, "psycopg_file": psycopg.pq.PGconn.__module__,
       "layer": [p for p in sys.path if p == layer_dir], "python": "%d.%d" % sys.version_info[:2],
       "loaded_at_import": loaded_at_import, "tracer": sys.modules["tickets.observability"].tracer is not None}
if event is not None:
    out["result"] = app.lambda_handler(event, context)
    out["loaded_after_request"] = sorted(sys.modules)
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
    completed = subprocess.run([LAMBDA_PYTHON, "-I", "-S", "-B", "-c", RUNNER, str(code_dir), str(layer_dir),
                                event_path], capture_output=True, text=True, env=env, timeout=120, check=False)
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


def aws_sdk_and_xray(modules: list[str]) -> list[str]:
    """boto3, botocore and the X-Ray SDK among `modules`. Powertools imports the botocore package
    itself (its __init__, a few names, to tag the SDK's user agent), so that alone does not count."""
    return [name for name in modules
            if name.partition(".")[0] in ("boto3", "aws_xray_sdk") or name.startswith("botocore.")]


@pytest.mark.parametrize("function", functions())
def test_a_cold_import_loads_neither_the_aws_sdk_nor_xray(function: str, lambda_env: dict[str, str]) -> None:
    """Init loads what every request needs; boto3/botocore come with the first request that reaches
    DynamoDB, a secret or another AWS service, the X-Ray SDK only where tracing is on."""
    loaded = run_built(function, "-", lambda_env)
    assert aws_sdk_and_xray(loaded["loaded_at_import"]) == []
    # Nor psycopg (the store's first call loads it), nor Powertools' OpenAPI models (only the
    # OpenAPI document needs them, tools/openapi.py).
    assert "psycopg" not in loaded["loaded_at_import"]
    assert "aws_lambda_powertools.event_handler.openapi.models" not in loaded["loaded_at_import"]
    assert loaded["tracer"] is False
    # Nor the resolvers and event classes the function does not use (tickets/lazy_package.py).
    assert unused_powertools(loaded["loaded_at_import"]) == []


# What the lazy packages keep out of every function: Powertools' other resolvers (AppSync's brings
# asyncio) and the event classes of other event sources.
UNUSED_POWERTOOLS = ("asyncio", "aws_lambda_powertools.event_handler.appsync",
                     "aws_lambda_powertools.event_handler.events_appsync",
                     "aws_lambda_powertools.event_handler.bedrock_agent",
                     "aws_lambda_powertools.event_handler.vpc_lattice",
                     "aws_lambda_powertools.event_handler.http_resolver",
                     "aws_lambda_powertools.event_handler.openapi.merge",
                     "aws_lambda_powertools.utilities.data_classes.s3_event",
                     "aws_lambda_powertools.utilities.data_classes.code_pipeline_job_event",
                     "aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event")


def unused_powertools(modules: list[str]) -> list[str]:
    return [name for name in modules if name in UNUSED_POWERTOOLS]


def test_the_sdk_loads_with_the_first_request_that_needs_it(lambda_env: dict[str, str]) -> None:
    """The reserve above went through the idempotency table; here, that the client came with it."""
    loaded = run_built("ReserveFunction", "reserve.json", lambda_env)
    assert loaded["result"]["statusCode"] == 201, loaded["result"]
    assert "boto3" in loaded["loaded_after_request"]
    assert aws_sdk_and_xray(loaded["loaded_at_import"]) == []
    # Not merely moved to the first request (asyncio comes with it all the same: psycopg imports it).
    assert unused_powertools([name for name in loaded["loaded_after_request"] if name != "asyncio"]) == []


def test_with_tracing_on_the_tracer_is_made_at_init_and_traces_a_request(lambda_env: dict[str, str]) -> None:
    """As on AWS with `Tracing: Active`: Lambda sets LAMBDA_TASK_ROOT and the trace header; the
    segments go to the X-Ray daemon's UDP address, where nothing listens here."""
    traced = {key: value for key, value in lambda_env.items() if key != "POWERTOOLS_TRACE_DISABLED"}
    traced.update({"LAMBDA_TASK_ROOT": str(BUILD_DIR / "HealthFunction"), "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
                   "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"})
    loaded = run_built("HealthFunction", "health.json", traced)
    assert loaded["tracer"] is True
    assert "aws_xray_sdk.core" in loaded["loaded_at_import"]
    assert loaded["result"]["statusCode"] == 200, loaded["result"]


def test_the_build_ships_hash_checked_bytecode_for_every_module() -> None:
    """Lambda's folders are read-only: a module without its .pyc is compiled on every cold start.
    Hash-checked, so it stays valid whatever times the zip gives the files, and a source that
    differs from it is compiled rather than misread."""
    tag = "cpython-" + built_template()["Globals"]["Function"]["Runtime"].removeprefix("python").replace(".", "")
    missing, not_checked = [], []
    for source in BUILD_DIR.rglob("*.py"):
        compiled = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        if not compiled.exists():
            missing.append(str(source.relative_to(BUILD_DIR)))
        elif int.from_bytes(compiled.read_bytes()[4:8], "little") != 0b11:  # PEP 552: hash-based, checked
            not_checked.append(str(compiled.relative_to(BUILD_DIR)))
    assert (missing[:5], not_checked[:5]) == ([], [])
