"""`python -m localstage invoke FUNCTION EVENT_FILE`: one function, one event, in this process.

Like `sam local invoke`: the function runs with its environment from template.yaml and the
response is printed as JSON on stdout (the function's logs go to stderr). It runs against the
local stage's database and DynamoDB when a stage is running; otherwise it starts the stage's
PostgreSQL cluster and an in-process moto for the call and stops them afterwards.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from localstage.dynamodb import LocalDynamoDB
from localstage.lambda_runtime import ROOT, LambdaContext, load_handler
from localstage.postgres import PostgresCluster
from localstage.stage import (
    DEMO_ADMIN_TOKEN,
    IDEMPOTENCY_TABLE,
    Backends,
    StageError,
    StageLock,
    apply_schema,
    check_reachable,
    function_environment,
    quiet_moto,
    read_stage_file,
    seed_demo_event,
    state_dir,
    stop_orphan_postgres,
)
from localstage.template import load_template

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


def _run(function: str, event_path: str, backends: Backends) -> int:
    template = load_template()
    try:
        spec = template.function(function)
    except KeyError as exc:
        raise StageError(str(exc.args[0])) from None
    event = _read_event(event_path)
    os.environ.update(function_environment(template, spec, backends))
    context = LambdaContext(function_name=spec.logical_id, timeout_seconds=spec.timeout_seconds,
                            memory_limit_in_mb=spec.memory_mb, log_group_name=f"/aws/lambda/{spec.logical_id}")
    # The function's logs (Powertools writes to stdout) go to stderr, so stdout holds only the response.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            handler = load_handler(spec.code_uri, spec.handler)
            result = handler(event, context)
        except Exception as exc:
            traceback.print_exc()
            error = {"errorMessage": str(exc), "errorType": type(exc).__name__}
            print(json.dumps(error), file=sys.__stdout__, flush=True)
            return 1
    print(json.dumps(result, indent=2, default=str), flush=True)
    return 0


def invoke(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr)
        return 2
    function, event_path = argv
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop what we started, as on Ctrl-C
    token = os.environ.get("TICKETS_ADMIN_TOKEN") or DEMO_ADMIN_TOKEN
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    lock = StageLock(directory)
    try:
        if not lock.acquire():
            stage = read_stage_file(directory)
            if stage is None:
                raise StageError(f"a local stage is starting in {directory}; try again when it is ready")
            log.info("using the running local stage (%s)", stage["base_url"])
            backends = Backends(database_url=stage["database_url"], dynamodb_endpoint=stage["dynamodb_endpoint"],
                                admin_token=token, table_name=stage.get("idempotency_table", IDEMPOTENCY_TABLE))
            return _run(function, event_path, backends)
        try:
            return _invoke_standalone(function, event_path, directory, token)
        finally:
            lock.release()
    except StageError as exc:
        print(f"localstage invoke: {exc}", file=sys.stderr)
        return 1


def _invoke_standalone(function: str, event_path: str, directory: Path, token: str) -> int:
    """No stage is running: the stage's database and a DynamoDB for the length of the call."""
    cluster: PostgresCluster | None = None
    database_url = os.environ.get("DATABASE_URL")
    quiet_moto()
    dynamodb = LocalDynamoDB()
    try:
        if not database_url:
            check_reachable(directory)
            stop_orphan_postgres(directory / "pgdata")
            cluster = PostgresCluster(directory / "pgdata", durable=True)
            log.info("no local stage is running: starting its PostgreSQL (%s) for this call", cluster.data_dir)
            try:
                database_url = cluster.start()
            except RuntimeError as exc:
                raise StageError(str(exc)) from None
        apply_schema(database_url)
        seed_demo_event(database_url)
        endpoint = dynamodb.start(IDEMPOTENCY_TABLE)
        backends = Backends(database_url=database_url, dynamodb_endpoint=endpoint, admin_token=token)
        return _run(function, event_path, backends)
    finally:
        with contextlib.suppress(Exception):
            dynamodb.stop()
        if cluster is not None:
            cluster.stop()
