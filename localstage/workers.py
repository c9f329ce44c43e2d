"""Lambda-like execution environments: per function, a pool of worker processes.

A pool's first worker starts the function's init process (`python -m localstage.workers FD`): a
process with the function's environment that imports the handler once, as Lambda's init phase
does. Every worker is forked from it, so it starts initialised in a few milliseconds and from then
on has module state of its own (the database connection, the clients), as a Lambda execution
environment has. A worker runs one invocation at a time and keeps that state between them. A pool
grows on demand up to its maximum, so concurrent requests really run at once; requests beyond the
maximum wait for a free worker. A worker that runs past the function's timeout is killed, as is one
that crashes; either way the invocation fails with `InvokeFailure` and the next request gets a
fresh worker. The local stage runs a pool per function of template.yaml (localstage.runtime), and
so do the tests' races.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing import reduction
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, NoReturn, cast

from localstage.lambda_runtime import ROOT, Handler, LambdaContext, load_handler

if TYPE_CHECKING:
    from pydantic import BaseModel

log = logging.getLogger("localstage")

# Lambda gives the init phase (imports, module-level clients) its own limit, apart from the
# function's timeout; locally it is more generous, since several functions may start at once (and
# LOCAL_STAGE_INIT_TIMEOUT raises it on a machine busy with other work).
INIT_TIMEOUT_SECONDS = float(os.environ.get("LOCAL_STAGE_INIT_TIMEOUT") or 30.0)
STOP_GRACE_SECONDS = 2.0


class InvokeFailure(Exception):
    """An invocation that produced no response: `kind` is timeout, crash, init or closed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class HandlerError(Exception):
    """The handler raised: Lambda reports an unhandled error (API Gateway answers 500)."""

    def __init__(self, error_type: str, message: str, trace: str) -> None:
        super().__init__(error_type)
        self.error_type = error_type
        self.message = message
        self.trace = trace


@dataclass(frozen=True)
class FunctionConfig:
    """What a worker needs to know about its function."""

    name: str
    code_uri: str
    handler: str
    timeout_seconds: float
    memory_mb: int
    environment: dict[str, str]

    def context(self) -> LambdaContext:
        return LambdaContext(function_name=self.name, timeout_seconds=self.timeout_seconds,
                             memory_limit_in_mb=self.memory_mb, log_group_name=f"/aws/lambda/{self.name}")


@dataclass(frozen=True)
class Invocation:
    result: Any
    duration_ms: float
    init_duration_ms: float | None  # set on a cold start


def _wait_closed(conn: Connection, timeout: float) -> bool:
    """Waits until the other end closes (its process is gone); False when it is still open after `timeout`."""
    deadline = time.monotonic() + timeout
    try:
        while conn.poll(max(0.0, deadline - time.monotonic())):
            conn.recv_bytes()  # a late reply
    except (EOFError, OSError):
        return True
    return False


class Worker:
    """One execution environment: a process forked from the init process, used by one thread at a time."""

    def __init__(self, config: FunctionConfig, pid: int, conn: Connection) -> None:
        self.config = config
        self.pid = pid
        self.conn = conn
        self.init_duration_ms: float | None = None

    def invoke(self, event: dict[str, Any]) -> Any:
        """The handler's result; raises HandlerError, or InvokeFailure when the worker is gone."""
        timeout = self.config.timeout_seconds
        try:
            self.conn.send(event)
            if not self.conn.poll(timeout + 0.1):
                self.kill()
                raise InvokeFailure("timeout", f"{self.config.name}: task timed out after {timeout:g} seconds; "
                                               f"worker {self.pid} killed")
            kind, payload = self.conn.recv()
        except (EOFError, OSError) as exc:
            self.conn.close()  # the process is gone: nothing left to kill
            raise InvokeFailure("crash", f"{self.config.name}: worker {self.pid} exited during the "
                                         f"invocation") from exc
        if kind == "error":
            raise HandlerError(*payload)
        return payload

    def signal_kill(self) -> None:
        """Kills the process only; the thread using the worker sees it die and cleans up."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def request_exit(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)

    def kill(self, grace: float = 0.0) -> None:
        """Kills the process unless it exits within `grace` seconds (by the thread that owns the worker)."""
        if self.conn.closed:
            return
        if not _wait_closed(self.conn, grace):
            self.signal_kill()
            if not _wait_closed(self.conn, 5):
                log.error("worker %s of %s did not die", self.pid, self.config.name)
        self.conn.close()


class InitProcess:
    """A function's init phase, run once: a process with the handler imported, which forks the workers."""

    def __init__(self, config: FunctionConfig) -> None:
        self.config = config
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "localstage.workers", str(theirs.fileno())],
                env=config.environment,
                pass_fds=(theirs.fileno(),),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=2,  # the functions' logs go with the stage's: stdout is for results (invoke)
                process_group=0,  # the terminal's Ctrl-C goes to the stage, which stops its workers itself
            )
        self.conn = Connection(ours.detach())
        try:
            self.conn.send(config)
            answer = self.conn.recv() if self.conn.poll(INIT_TIMEOUT_SECONDS) else ("timeout", None)
        except (EOFError, OSError):
            answer = ("exited", None)
        if answer[0] != "ready":
            self.close()
            problem = {"timeout": f"init did not finish within {INIT_TIMEOUT_SECONDS:.0f}s",
                       "exited": f"the process exited during init (exit code {self.process.returncode})"}
            raise InvokeFailure("init", f"{config.name}: " + problem.get(answer[0], f"init failed:\n{answer[1]}"))

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def fork(self) -> Worker:
        ours, theirs = socket.socketpair()
        with theirs:
            try:
                reduction.send_handle(self.conn, theirs.fileno(), self.process.pid)
                pid = self.conn.recv()
            except (EOFError, OSError) as exc:
                ours.close()
                raise InvokeFailure("crash", f"{self.config.name}: the init process is gone") from exc
        return Worker(self.config, pid, Connection(ours.detach()))

    def close(self) -> None:
        self.conn.close()  # the init process exits when its connection closes
        try:
            self.process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class FunctionPool:
    """The execution environments of one function: grows on demand up to max_workers."""

    def __init__(self, config: FunctionConfig, max_workers: int) -> None:
        self.config = config
        self.max_workers = max(1, max_workers)
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._size = 0  # idle + busy + starting
        self._cond = threading.Condition()
        self._closed = False
        self._init: InitProcess | None = None
        self._init_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.config.name

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"size": self._size, "idle": len(self._idle), "busy": len(self._busy)}

    def _fork(self) -> Worker:
        with self._init_lock:
            if self._closed:
                raise InvokeFailure("closed", f"{self.name}: the stage is stopping")
            if self._init is None or not self._init.alive:
                self._init = InitProcess(self.config)
            return self._init.fork()

    def _acquire(self) -> Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise InvokeFailure("closed", f"{self.name}: the stage is stopping")
                if self._idle:
                    worker = self._idle.pop()  # the most recently used: the warmest
                    self._busy.add(worker)
                    return worker
                if self._size < self.max_workers:
                    self._size += 1
                    break
                self._cond.wait()
        started = time.monotonic()
        try:
            worker = self._fork()
        except BaseException:
            with self._cond:
                self._size -= 1
                self._cond.notify()  # the place it held: one waiter may start a worker
            raise
        worker.init_duration_ms = (time.monotonic() - started) * 1000
        log.info("%s: started worker %d (init %.0f ms)", self.name, worker.pid, worker.init_duration_ms)
        with self._cond:
            self._busy.add(worker)
        return worker

    def _release(self, worker: Worker, *, healthy: bool) -> None:
        with self._cond:
            self._busy.discard(worker)
            keep = healthy and not self._closed
            if keep:
                self._idle.append(worker)
            else:
                self._size -= 1
            # One worker (or one place) came free: wake one waiter. notify_all would wake every
            # request queued here (thousands in a load test), each to take the GIL, find nothing
            # and wait again, in the process that also serves the gateway.
            self._cond.notify()
        if not keep:
            worker.kill()

    def invoke(self, event: dict[str, Any]) -> Invocation:
        """Runs one invocation on a free worker, starting one when none is free and the pool may grow."""
        worker = self._acquire()
        init_ms, worker.init_duration_ms = worker.init_duration_ms, None
        started = time.monotonic()
        healthy = False
        try:
            result = worker.invoke(event)
            healthy = True
        except HandlerError:
            healthy = True  # the runtime reports the error and the environment lives on
            raise
        finally:
            self._release(worker, healthy=healthy)
        return Invocation(result=result, duration_ms=(time.monotonic() - started) * 1000, init_duration_ms=init_ms)

    def prewarm(self, count: int = 1) -> None:
        """Starts up to `count` workers now, so that the first requests find a warm one."""
        workers = []
        try:
            for _ in range(min(count, self.max_workers)):
                workers.append(self._acquire())
        finally:
            for worker in workers:
                worker.init_duration_ms = None
                self._release(worker, healthy=True)

    def close(self, grace: float = 5.0) -> None:
        """Lets running invocations finish (up to `grace` seconds), then stops every worker."""
        deadline = time.monotonic() + grace
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while self._busy and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            idle, busy = list(self._idle), list(self._busy)
            self._idle.clear()
        for worker in busy:
            worker.signal_kill()
        for worker in idle:
            worker.request_exit()
        for worker in idle:
            worker.kill(grace=STOP_GRACE_SECONDS)
        with self._init_lock:
            if self._init is not None:
                self._init.close()
                self._init = None


# ---------------------------------------------------------------------------------------------
# The init process and the workers forked from it.


def _preload_first_use() -> None:
    """What the layer leaves to a function's first request (README, "Cold starts"), done here once:
    psycopg for the functions that import the store, the idempotency table's client (boto3,
    botocore) for those that import its module, the queue table's resource, the models' validators.
    On Lambda each environment pays it in its own first request; forked from this one process,
    fifty cold workers would all pay it at the same moment, on this machine's few cores, inside
    their invocations' timeouts."""
    if "tickets.store.db" in sys.modules or "tickets.store.migrate" in sys.modules:
        importlib.import_module("psycopg")
    records = sys.modules.get("tickets.store.idempotency_records")
    if records is not None:
        records.persistence_store()
    if "tickets.domain.queue" in sys.modules:  # the queue function: its table's resource
        importlib.import_module("tickets.store.queue_records").prepare()
    common = sys.modules.get("tickets.models.common")
    if common is not None:  # the models' modules the function imported (tickets/models/)
        for name, module in list(sys.modules.items()):
            if not name.startswith("tickets.models."):
                continue
            for model in vars(module).values():
                if isinstance(model, type) and issubclass(model, common.Model):
                    cast("type[BaseModel]", model).model_rebuild()  # builds what defer_build left unbuilt


def _init_main(fd: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stage stops its workers itself
    conn = Connection(fd)
    try:
        config: FunctionConfig = conn.recv()
        sys.path.insert(0, str((ROOT / config.code_uri).resolve()))  # Lambda puts /var/task on sys.path too
        handler = load_handler(config.code_uri, config.handler)
        _preload_first_use()
    except EOFError:
        return 0
    except BaseException:
        conn.send(("init_error", traceback.format_exc()))
        return 1
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the workers are reaped as they exit
    gc.freeze()  # what init built stays shared with the workers, not copied by the collector's writes
    conn.send(("ready", None))
    while True:
        try:
            worker_fd = reduction.recv_handle(conn)
        except (EOFError, OSError):
            return 0  # the pool is closed
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                conn.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _serve(Connection(worker_fd), handler, config)
            finally:
                os._exit(1)
        os.close(worker_fd)
        conn.send(pid)


def _serve(conn: Connection, handler: Handler, config: FunctionConfig) -> NoReturn:
    """A worker's life: one invocation at a time, module state kept between them."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            message = None  # the stage is gone
        if message is None:
            # Like a Lambda environment being reclaimed: no interpreter teardown, which takes a while.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        try:
            reply: tuple[str, Any] = ("ok", handler(message, config.context()))
        except Exception as exc:
            reply = ("error", (type(exc).__name__, str(exc), traceback.format_exc()))
        sys.stdout.flush()
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result
            conn.send(("error", (type(exc).__name__, str(exc), traceback.format_exc())))


if __name__ == "__main__":
    sys.exit(_init_main(int(sys.argv[1])))
