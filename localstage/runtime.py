"""The local runtime: the functions' services and their execution environments, for the local stage,
`make invoke`, the tests and the benchmarks alike.

The services: PostgreSQL (migrated and seeded) and DynamoDB (moto) with template.yaml's tables.
The environments: a pool of Lambda-like workers per function (localstage.workers), each with the
environment template.yaml gives the function, pointed at the services.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from localstage.dynamodb import LocalDynamoDB
from localstage.postgres import PostgresCluster, PostgresSupervisor
from localstage.seed import DEMO_EVENT_ID, TABLE_NAMES, local_settings, prepare_database
from localstage.template import FunctionSpec, Template
from localstage.workers import FunctionConfig, FunctionPool

log = logging.getLogger("localstage")
T = TypeVar("T")


class StageError(Exception):
    """A reason the stage (or what it starts) cannot start, worded for the person who started it."""


@dataclass(frozen=True)
class Backends:
    """Where the functions' services are."""

    database_url: str
    dynamodb_endpoint: str
    tables: dict[str, str]  # template.yaml's logical id -> the local table name (what !Ref gives)


class LocalBackends:
    """Starts the services, as a context manager (`with LocalBackends(...) as backends`) or by start()/stop().

    PostgreSQL: `database_url` when given; else a private cluster in `data_dir`, kept between runs, or
    without one a throwaway cluster in a temporary folder. Either way migrated and seeded (localstage.seed).
    With supervise=True a private cluster is restarted whenever its postmaster dies (PostgresSupervisor).
    DynamoDB (unless dynamodb=False): moto in this process, its endpoint known from the start; with
    `dynamodb_state`, its items are saved to that file when it stops and restored when it starts.
    """

    def __init__(self, template: Template, *, database_url: str | None = None, data_dir: Path | None = None,
                 durable: bool = True, dynamodb: bool = True, supervise: bool = False,
                 dynamodb_state: Path | None = None) -> None:
        self.template = template
        self.database_url = database_url
        self.data_dir = data_dir
        self.durable = durable
        self.supervise = supervise
        self.dynamodb = LocalDynamoDB(dynamodb_state) if dynamodb else None
        self.cluster: PostgresCluster | None = None
        self.supervisor: PostgresSupervisor | None = None
        self._scratch: Path | None = None

    @property
    def dynamodb_endpoint(self) -> str:
        return self.dynamodb.endpoint_url if self.dynamodb is not None else ""

    def start(self) -> Backends:
        try:
            if self.database_url:
                log.info("using the database at DATABASE_URL")
            url = self.database_url or self._start_cluster()
            applied = prepare_database(url)
            log.info("migrations: %s; demo event %s", ", ".join(applied) or "schema is up to date", DEMO_EVENT_ID)
            tables = {logical_id: TABLE_NAMES.get(logical_id, logical_id) for logical_id in self.template.tables}
            if self.dynamodb is not None:
                self.dynamodb.start({name: self.template.tables[logical_id] for logical_id, name in tables.items()})
                log.info("DynamoDB (moto) at %s, tables %s", self.dynamodb_endpoint, ", ".join(tables.values()))
        except BaseException:
            self.stop()
            raise
        return Backends(database_url=url, dynamodb_endpoint=self.dynamodb_endpoint, tables=tables)

    def _start_cluster(self) -> str:
        if self.data_dir is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="localstage-pg-"))
            data_dir = self._scratch / "data"
        else:
            data_dir = self.data_dir
            check_reachable(data_dir.parent)
            stop_orphan_postgres(data_dir)
        self.cluster = PostgresCluster(data_dir, durable=self.durable)
        log.info("%s PostgreSQL in %s", "starting" if self.cluster.initialized() else "initialising", data_dir)
        try:
            url = self.cluster.start()
        except RuntimeError as exc:
            raise StageError(str(exc)) from None
        log.info("PostgreSQL at %s", redact(url))
        if self.supervise:
            self.supervisor = PostgresSupervisor(self.cluster)
            self.supervisor.start()
        return url

    def stop(self) -> None:
        if self.dynamodb is not None:
            self.dynamodb.stop()
        if self.supervisor is not None:
            self.supervisor.stop()  # before the cluster stops: a stop is no death to be mended
            self.supervisor = None
        if self.cluster is not None:
            self.cluster.stop()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> Backends:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def process_environment() -> dict[str, str]:
    """What a function's process needs on this machine before Lambda's variables and the template's."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "PYTHONUNBUFFERED": "1",
        "AWS_CONFIG_FILE": os.devnull,  # the developer's profiles must not redirect the functions
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def function_environment(template: Template, spec: FunctionSpec, backends: Backends,
                         admin_token: str) -> dict[str, str]:
    """What the function's process sees: Lambda's variables, then the template's with !Ref resolved."""
    env = {
        **process_environment(),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.logical_id}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
    }
    env.update(template.environment(spec, {**backends.tables, "StageName": "local"}))
    # After the template's, which declares these empty (for sam local's --env-vars: localstage/sam_local.py).
    env["AWS_ENDPOINT_URL_DYNAMODB"] = backends.dynamodb_endpoint
    env.update(local_settings(backends.database_url, admin_token))
    env["POWERTOOLS_TRACE_DISABLED"] = "true"  # no X-Ray daemon locally
    return env


def function_pool(template: Template, spec: FunctionSpec, backends: Backends, *, admin_token: str,
                  max_workers: int, environment: dict[str, str] | None = None) -> FunctionPool:
    """A pool with the environment the stage gives the function, or `environment` when given."""
    if environment is None:
        environment = function_environment(template, spec, backends, admin_token)
    config = FunctionConfig(name=spec.logical_id, code_uri=spec.code_uri, handler=spec.handler,
                            timeout_seconds=spec.timeout_seconds, memory_mb=spec.memory_mb, environment=environment)
    return FunctionPool(config, max_workers)


def function_pools(template: Template, backends: Backends, *, admin_token: str,
                   max_workers: int) -> dict[str, FunctionPool]:
    """A pool per function of the template, by logical id; each starts its init process on first use."""
    return {logical_id: function_pool(template, spec, backends, admin_token=admin_token, max_workers=max_workers)
            for logical_id, spec in template.functions.items()}


def close_pools(pools: Mapping[str, FunctionPool]) -> None:
    at_once(FunctionPool.close, pools.values())


def at_once(action: Callable[[T], object], items: Iterable[T]) -> None:
    """Runs action(item) for every item, side by side, and waits for all (in short waits, so that a
    signal is seen promptly)."""
    threads = [threading.Thread(target=action, args=(item,), daemon=True) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)


def redact(url: str) -> str:
    """A database URL fit for a terminal: the password, if any, replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def check_reachable(directory: Path) -> None:
    """Under root, PostgreSQL runs as `postgres`, which must be able to reach the state directory."""
    if os.geteuid() != 0:
        return
    directory.mkdir(parents=True, exist_ok=True)
    mode = directory.stat().st_mode
    if not mode & 0o001:
        directory.chmod(mode | 0o711)  # our own folder: let the server user through
    for folder in directory.parents:
        if folder.exists() and not os.stat(folder).st_mode & 0o001:
            raise StageError(
                f"PostgreSQL runs as the user 'postgres', which cannot enter {folder} (mode "
                f"{oct(os.stat(folder).st_mode & 0o777)}). Set LOCAL_STAGE_DIR to a folder it can reach, "
                f"or run: chmod o+x {folder}")


def stop_orphan_postgres(data_dir: Path) -> None:
    """Stops a server left running on data_dir by a stage that was killed (the caller holds the stage lock)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        if b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes():
            log.warning("stopping PostgreSQL (pid %d) left running on %s by an earlier stage", pid, data_dir)
            PostgresCluster(data_dir).stop()
