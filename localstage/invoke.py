"""`python -m localstage invoke FUNCTION EVENT_FILE`: one function, one event.

Like `sam local invoke`: the function runs in a Lambda-like worker (localstage.workers) with its
environment from template.yaml, and the response is printed as JSON on stdout (the function's logs
go to stderr). It runs against the local stage's database and DynamoDB when a stage is running;
otherwise it starts the stage's PostgreSQL cluster and a DynamoDB for the call and stops them afterwards.
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
from localstage.seed import ADMIN_TOKEN_VARIABLE, DEMO_ADMIN_TOKEN
from localstage.stage import StageLock, read_stage_file, state_dir
from localstage.template import FunctionSpec, Template, load_template
from localstage.workers import HandlerError, InvokeFailure

log = logging.getLogger("localstage")

USAGE = """usage: python -m localstage invoke FUNCTION EVENT_FILE

FUNCTION is a logical id of template.yaml (ReserveFunction) or its folder name (reserve);
EVENT_FILE is a JSON event, e.g. events/reserve.json (python -m localstage.sample_events writes them)."""


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


def _run(template: Template, spec: FunctionSpec, event: dict[str, Any], backends: Backends, token: str) -> int:
    pool = function_pool(template, spec, backends, admin_token=token, max_workers=1)
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
    if len(argv) != 2 or argv[0] in ("-h", "--help"):
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
        if not lock.acquire():
            stage = read_stage_file(directory)
            if stage is None:
                raise StageError(f"a local stage is starting in {directory}; try again when it is ready")
            log.info("using the running local stage (%s)", stage["base_url"])
            backends = Backends(stage["database_url"], stage["dynamodb_endpoint"], stage["tables"])
            return _run(template, spec, event, backends, token)
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
