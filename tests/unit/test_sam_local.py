"""The --env-vars file the stage writes for `sam local`: it gives every function of template.yaml
what the function reads, as the stage gives it, and SAM CLI gives the containers exactly that.

(Docker is not on the machines the tests run on: the container run itself is documented in the
README, not tested. What is tested is the environment SAM CLI computes for each container, with
SAM CLI's own code when it is installed, and, in tests/e2e, every sample event run on a stage with
that environment.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from localstage.runtime import Backends, function_environment
from localstage.sam_local import (
    CONTAINER_HOST,
    Relay,
    container_environment,
    env_vars,
    host_environment,
    interface_address,
    seen_from_containers,
)
from localstage.template import load_template
from tickets.settings import VARIABLES

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
BACKENDS = Backends(database_url="postgresql://postgres@127.0.0.1:41234/tickets",
                    dynamodb_endpoint="http://127.0.0.1:45678", tables={"IdempotencyTable": "tickets-idempotency"})
TOKEN = "sam-local-token"
# Besides the settings (tickets.settings.VARIABLES), what the functions read through boto3.
AWS_VARIABLES = ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_REGION", "AWS_DEFAULT_REGION")


def set_values(env: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The variables among `names` that are set; empty counts as unset (for the layer and boto3 alike)."""
    return {name: env[name] for name in names if env.get(name)}


def test_the_file_sets_every_variable_each_function_declares_and_no_other() -> None:
    template = load_template()
    file = env_vars(template, BACKENDS, TOKEN)
    assert set(file) == set(template.functions)
    for logical_id, spec in template.functions.items():
        # SAM overrides declared variables only (any other name would be dropped) and fills the
        # declared ones the file leaves out itself (a !Ref becomes the resource's logical id).
        assert set(file[logical_id]) == set(spec.environment), logical_id


def test_each_function_reads_in_its_container_what_the_stage_gives_it() -> None:
    template = load_template()
    file = env_vars(template, BACKENDS, TOKEN)
    names = (*VARIABLES, *AWS_VARIABLES)
    for spec in template.functions.values():
        in_container = container_environment(template, spec, file)
        assert f"@{CONTAINER_HOST}:41234/" in in_container["DATABASE_URL"]
        assert in_container["AWS_ENDPOINT_URL_DYNAMODB"] == f"http://{CONTAINER_HOST}:45678"
        on_the_stage = function_environment(template, spec, seen_from_containers(BACKENDS), TOKEN)
        assert set_values(in_container, names) == set_values(on_the_stage, names), spec.logical_id
        # make invoke ENV_VARS=...: the same, with this machine's address for host.docker.internal.
        on_this_machine = host_environment(template, spec, file)
        assert set_values(on_this_machine, names) == set_values(function_environment(template, spec, BACKENDS, TOKEN),
                                                                names), spec.logical_id


SAM_CLI_ENVIRONMENTS = """
import json, sys
from samcli.commands.local.lib.local_lambda import LocalLambdaRunner
from samcli.lib.providers.sam_function_provider import SamFunctionProvider
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

stacks, _ = SamLocalStackProvider.get_stacks(sys.argv[1])
provider = SamFunctionProvider(stacks)
runner = LocalLambdaRunner(local_runtime=None, function_provider=provider, cwd=".", real_path=".",
                           env_vars_values=json.load(open(sys.argv[2])), aws_region="us-east-1")
print(json.dumps({function.name: runner._make_env_vars(function).resolve() for function in provider.get_all()}))
"""


@pytest.mark.skipif(not SAM_PYTHON.exists(), reason="SAM CLI is not installed (make validate installs it)")
def test_sam_cli_gives_each_container_that_environment(tmp_path: Path) -> None:
    template = load_template()
    file = env_vars(template, BACKENDS, TOKEN)
    path = tmp_path / "sam-env.json"
    path.write_text(json.dumps(file))
    # As on a machine with no AWS configuration, the README's --region us-east-1, and a shell that
    # happens to set a declared variable (the file wins over it).
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update({"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "SAM_CLI_TELEMETRY": "0",
                "DATABASE_URL": "postgresql://somewhere-else/db"})
    completed = subprocess.run([str(SAM_PYTHON), "-c", SAM_CLI_ENVIRONMENTS, str(ROOT / "template.yaml"), str(path)],
                               capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    by_sam = json.loads(completed.stdout.strip().splitlines()[-1])
    assert set(by_sam) == set(template.functions)
    for logical_id, spec in template.functions.items():
        ours = container_environment(template, spec, file)
        assert {name: by_sam[logical_id].get(name) for name in ours} == ours, logical_id


def test_without_the_file_sam_would_give_logical_ids_and_blanks() -> None:
    template = load_template()
    reserve = container_environment(template, template.functions["ReserveFunction"], {})
    assert reserve["IDEMPOTENCY_TABLE"] == "IdempotencyTable"  # a !Ref SAM cannot resolve
    assert reserve["DB_HOST"] == "" and reserve["DATABASE_URL"] == ""
    authorizer = container_environment(template, template.functions["AuthorizerFunction"], {"Parameters": {
        "ADMIN_TOKEN_SECRET_ARN": "from-parameters"}, "AuthorizerFunction": {"TICKETS_ADMIN_TOKEN": "t"}})
    assert authorizer["ADMIN_TOKEN_SECRET_ARN"] == "from-parameters" and authorizer["TICKETS_ADMIN_TOKEN"] == "t"


def test_a_database_named_localhost_is_reached_as_this_machine_too() -> None:
    seen = seen_from_containers(Backends("postgresql://app:secret@localhost:5433/db", "http://localhost:1",
                                         {}))
    assert seen.database_url == f"postgresql://app:secret@{CONTAINER_HOST}:5433/db"
    assert seen.dynamodb_endpoint == f"http://{CONTAINER_HOST}:1"
    remote = seen_from_containers(Backends("postgresql://app@db.example.com:5432/db", "", {}))
    assert remote.database_url == "postgresql://app@db.example.com:5432/db" and remote.dynamodb_endpoint == ""


def test_interface_address() -> None:
    assert interface_address("lo") == "127.0.0.1"
    assert interface_address("no-such-if0") is None


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A server on 127.0.0.1 that echoes what it receives, upper-cased."""
    listener = socket.create_server(("127.0.0.1", 0))
    stopping = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                while data := conn.recv(1024):
                    conn.sendall(data.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stopping.set()
    thread.join(2)
    listener.close()


def test_the_relay_forwards_another_address_to_the_same_port_on_loopback(echo_server: int) -> None:
    relay = Relay("127.0.0.2", [echo_server])  # any address but 127.0.0.1 stands for the Docker bridge's
    try:
        with socket.create_connection(("127.0.0.2", echo_server), timeout=5) as client:
            client.sendall(b"select 1")
            assert client.recv(1024) == b"SELECT 1"
    finally:
        relay.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", echo_server), timeout=2).close()
