"""`python -m localstage invoke FUNCTION EVENT_FILE`: one function, one event.

Like `sam local invoke`: the function runs in a Lambda-like worker (localstage.workers) with its
environment from template.yaml, and the response is printed as JSON on stdout (the function's logs
go to stderr). It runs against the local stage's database and DynamoDB when a stage is running;
otherwise it starts the stage's PostgreSQL cluster and a DynamoDB for the call and stops them afterwards.

With `--env-vars FILE` (the stage's .local/sam-env.json), the function gets the environment
`sam local invoke --env-vars FILE` gives its container instead (localstage/sam_local.py), against
the running stage: the Docker-free check of what SAM would run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from localstage.lambda_runtime import ROOT
from localstage.runtime import Backends, LocalBackends, StageError, function_pool
from localstage.sam_local import host_environment, read_env_file
from localstage.seed import ADMIN_TOKEN_VARIABLE, DEMO_ADMIN_TOKEN
from localstage.stage import StageLock, read_stage_file, state_dir
from localstage.template import FunctionSpec, Template, load_template
from localstage.workers import HandlerError, InvokeFailure

log = logging.getLogger("localstage")

USAGE = """usage: python -m localstage invoke [--env-vars ENV_FILE] FUNCTION EVENT_FILE

FUNCTION is a logical id of template.yaml (ReserveFunction) or its folder name (reserve);
EVENT_FILE is a JSON event, e.g. events/reserve.json (python -m localstage.sample_events writes them);
ENV_FILE a SAM CLI --env-vars file: the function gets the environment `sam local invoke` would give
it (the running stage's .local/sam-env.json reaches that stage)."""


def _read_event(path: str) -> dict[str, Any]:
    candidate = Path(path)
    if not candidate.exists() and not candidate.is_absolute() and (ROOT / candidate).exists():
        candidate = ROOT / candidate
    try:
        event: dict[str, Any] = json.loads(candidate.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageError(f"no event file {path}") from None
    except ValueError as exc:
        raise StageError(f"{path} is not valid JSON: {exc}") from None
    return event


def _sam_environment(template: Template, spec: FunctionSpec, env_file: Path) -> dict[str, str]:
    try:
        return host_environment(template, spec, read_env_file(env_file))
    except FileNotFoundError:
        raise StageError(f"no env-vars file {env_file} (the local stage writes .local/sam-env.json)") from None
    except ValueError as exc:
        raise StageError(f"{env_file} is not an env-vars file: {exc}") from None


def _run(template: Template, spec: FunctionSpec, event: dict[str, Any], backends: Backends, token: str,
         environment: dict[str, str] | None = None) -> int:
    pool = function_pool(template, spec, backends, admin_token=token, max_workers=1, environment=environment)
    try:
        result = pool.invoke(event).result
    except InvokeFailure as failure:
        raise StageError(failure.message) from None
    except HandlerError as error:
        print(error.trace, file=sys.stderr)
        print(json.dumps({"errorMessage": error.message, "errorType": error.error_type}), flush=True)
        return 1
    finally:
        pool.close()
    print(json.dumps(result, indent=2, default=str), flush=True)
    return 0


def invoke(argv: list[str]) -> int:
    env_file: Path | None = None
    if len(argv) == 4 and argv[0] == "--env-vars":
        env_file, argv = Path(argv[1]), argv[2:]
    if len(argv) != 2 or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop what we started, as on Ctrl-C
    token = os.environ.get(ADMIN_TOKEN_VARIABLE) or DEMO_ADMIN_TOKEN
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    lock = StageLock(directory)
    try:
        template = load_template()
        try:
            spec = template.function(argv[0])
        except KeyError as exc:
            raise StageError(str(exc.args[0])) from None
        event = _read_event(argv[1])
        environment = None if env_file is None else _sam_environment(template, spec, env_file)
        if not lock.acquire():
            stage = read_stage_file(directory)
            if stage is None:
                raise StageError(f"a local stage is starting in {directory}; try again when it is ready")
            log.info("using the running local stage (%s)", stage["base_url"])
            backends = Backends(stage["database_url"], stage["dynamodb_endpoint"], stage["tables"])
            return _run(template, spec, event, backends, token, environment)
        if environment is not None:
            lock.release()
            raise StageError(f"--env-vars {env_file}: no local stage is running in {directory}, and the file "
                             "names the ports of a running one: start it (make dev)")
        try:
            log.info("no local stage is running: starting its database and DynamoDB for this call")
            with LocalBackends(template, database_url=os.environ.get("DATABASE_URL"),
                               data_dir=directory / "pgdata") as backends:
                return _run(template, spec, event, backends, token)
        finally:
            lock.release()
    except StageError as exc:
        print(f"localstage invoke: {exc}", file=sys.stderr)
        return 1
