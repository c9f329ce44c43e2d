"""Lambda-like execution environments: per function, a pool of worker processes.

Each worker is a separate Python process (`python -m localstage.workers FD`) that imports one
function's handler once, with the function's environment set before the import, and then runs
one invocation at a time, keeping its module state (the database connection) between them, as a
Lambda execution environment does. A pool grows on demand up to its maximum, so concurrent
requests really run at once; requests beyond the maximum wait for a free worker. A worker that
runs past the function's timeout is killed, as is one that crashes; either way the invocation
fails with `InvokeFailure` and the next request gets a fresh worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from localstage.lambda_runtime import ROOT, LambdaContext, load_handler

log = logging.getLogger("localstage")

# Lambda gives the init phase (imports, module-level clients) its own limit, apart from the
# function's timeout; locally it is more generous, since several workers may start at once.
INIT_TIMEOUT_SECONDS = 30.0
STOP_GRACE_SECONDS = 2.0


class InvokeFailure(Exception):
    """An invocation that produced no response: `kind` is timeout, crash, init or closed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class HandlerError(Exception):
    """The handler raised: Lambda reports an unhandled error (API Gateway answers 500)."""

    def __init__(self, error_type: str, trace: str) -> None:
        super().__init__(error_type)
        self.error_type = error_type
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


@dataclass(frozen=True)
class Invocation:
    result: Any
    request_id: str
    duration_ms: float
    init_duration_ms: float | None  # set on a cold start


class Worker:
    """One execution environment: a process with the handler imported, used by one thread at a time."""

    def __init__(self, config: FunctionConfig) -> None:
        self.config = config
        parent_end, child_end = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "localstage.workers", str(child_end.fileno())],
                env=config.environment,
                pass_fds=(child_end.fileno(),),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                process_group=0,  # the terminal's Ctrl-C goes to the stage, which stops workers itself
            )
        finally:
            child_end.close()
        self.conn = Connection(parent_end.detach())
        self.init_duration_ms: float | None = None
        self._kill_lock = threading.Lock()
        self._dead = False
        self._exit_requested = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = INIT_TIMEOUT_SECONDS) -> None:
        """Sends the worker its function and waits for the handler's import (the init phase)."""
        started = time.monotonic()
        setup = {
            "name": self.config.name,
            "code_uri": self.config.code_uri,
            "handler": self.config.handler,
            "timeout_seconds": self.config.timeout_seconds,
            "memory_mb": self.config.memory_mb,
        }
        try:
            self.conn.send(setup)
            ready = self.conn.poll(timeout)
            if ready:
                kind, detail = self.conn.recv()
        except (EOFError, OSError) as exc:
            code = self._exit_code()
            self.kill()
            raise InvokeFailure("init", f"{self.config.name}: the worker exited during init "
                                        f"(exit code {code})") from exc
        if not ready:
            self.kill()
            raise InvokeFailure("init", f"{self.config.name}: init did not finish within {timeout:.0f}s")
        if kind != "ready":
            self.kill()
            raise InvokeFailure("init", f"{self.config.name}: init failed:\n{detail}")
        self.init_duration_ms = (time.monotonic() - started) * 1000

    def _exit_code(self) -> int | None:
        """The exit code of a worker whose connection closed (it may take a moment to exit)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(1)
        return self.process.poll()

    def invoke(self, event: dict[str, Any], request_id: str) -> Any:
        """The handler's result; raises HandlerError, or InvokeFailure after killing the worker."""
        timeout = self.config.timeout_seconds
        try:
            self.conn.send((event, request_id))
            ready = self.conn.poll(timeout + 0.1)
        except (OSError, EOFError) as exc:
            self.kill()
            raise InvokeFailure("crash", f"{self.config.name}: the worker is gone "
                                         f"(exit code {self.process.poll()})") from exc
        if not ready:
            self.kill()
            raise InvokeFailure("timeout", f"{self.config.name}: task timed out after {timeout:g} seconds; "
                                           f"worker {self.pid} killed")
        try:
            kind, payload = self.conn.recv()
        except (EOFError, OSError) as exc:
            code = self._exit_code()
            self.kill()
            raise InvokeFailure("crash", f"{self.config.name}: worker {self.pid} exited during the invocation "
                                         f"(exit code {code})") from exc
        if kind == "error":
            error_type, trace = payload
            raise HandlerError(error_type, trace)
        return payload

    def request_exit(self) -> None:
        if self._exit_requested:
            return
        self._exit_requested = True
        with contextlib.suppress(OSError):
            self.conn.send(None)

    def stop(self) -> None:
        """Asks the worker to exit, and kills it when it does not in time."""
        self.request_exit()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(STOP_GRACE_SECONDS)
        self.kill()

    def signal_kill(self) -> None:
        """Kills the process only; the thread using the worker sees it die and cleans up."""
        with contextlib.suppress(ProcessLookupError):
            if self.process.poll() is None:
                self.process.kill()

    def kill(self) -> None:
        """Kills the process and closes the connection (by the thread that owns the worker)."""
        with self._kill_lock:
            if self._dead:
                return
            self._dead = True
        self.signal_kill()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            log.error("worker %s of %s did not die", self.pid, self.config.name)
        self.conn.close()


class FunctionPool:
    """The execution environments of one function: grows on demand up to max_workers."""

    def __init__(self, config: FunctionConfig, max_workers: int) -> None:
        self.config = config
        self.max_workers = max(1, max_workers)
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._starting: set[Worker] = set()
        self._size = 0  # idle + busy + starting
        self._cond = threading.Condition()
        self._closed = False

    @property
    def name(self) -> str:
        return self.config.name

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"size": self._size, "idle": len(self._idle), "busy": len(self._busy)}

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
        started: Worker | None = None
        try:
            started = Worker(self.config)
            with self._cond:
                self._starting.add(started)
                closed = self._closed
            if closed:
                raise InvokeFailure("closed", f"{self.name}: the stage is stopping")
            started.wait_ready()
        except BaseException:
            with self._cond:
                self._size -= 1
                if started is not None:
                    self._starting.discard(started)
                self._cond.notify_all()
            if started is not None:
                started.kill()
            raise
        worker = started
        log.info("%s: started worker %d (init %.0f ms)", self.name, worker.pid, worker.init_duration_ms or 0)
        with self._cond:
            self._starting.discard(worker)
            if self._closed:
                self._size -= 1
                self._cond.notify_all()
                worker.kill()
                raise InvokeFailure("closed", f"{self.name}: the stage is stopping")
            self._busy.add(worker)
        return worker

    def _release(self, worker: Worker, *, healthy: bool) -> None:
        with self._cond:
            self._busy.discard(worker)
            keep = healthy and not self._closed and worker.process.poll() is None
            if keep:
                self._idle.append(worker)
            else:
                self._size -= 1
            self._cond.notify_all()
        if not keep:
            worker.kill()

    def invoke(self, event: dict[str, Any]) -> Invocation:
        """Runs one invocation on a free worker, starting one when none is free and the pool may grow."""
        worker = self._acquire()
        init_ms, worker.init_duration_ms = worker.init_duration_ms, None
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        healthy = False
        try:
            result = worker.invoke(event, request_id)
            healthy = True
        except HandlerError:
            healthy = True  # the runtime reports the error and the environment lives on
            raise
        finally:
            self._release(worker, healthy=healthy)
        return Invocation(result=result, request_id=request_id, duration_ms=(time.monotonic() - started) * 1000,
                          init_duration_ms=init_ms)

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
            idle, busy = list(self._idle), [*self._busy, *self._starting]
            self._idle.clear()
        for worker in busy:
            worker.signal_kill()
        for worker in idle:
            worker.request_exit()
        for worker in idle:
            worker.stop()


# ---------------------------------------------------------------------------------------------
# The worker process.


def _worker_main(fd: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stage stops its workers itself
    conn = Connection(fd)
    try:
        setup = conn.recv()
    except EOFError:
        return 0
    try:
        # Lambda puts the function's own folder (/var/task) on sys.path too.
        code_dir = str((ROOT / setup["code_uri"]).resolve())
        if code_dir not in sys.path:
            sys.path.insert(0, code_dir)
        handler = load_handler(setup["code_uri"], setup["handler"])
    except BaseException:
        conn.send(("init_error", traceback.format_exc()))
        return 1
    conn.send(("ready", None))
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
        event, request_id = message
        context = LambdaContext(function_name=setup["name"], timeout_seconds=setup["timeout_seconds"],
                                memory_limit_in_mb=setup["memory_mb"], aws_request_id=request_id,
                                log_group_name=f"/aws/lambda/{setup['name']}")
        try:
            reply: tuple[str, Any] = ("ok", handler(event, context))
        except Exception as exc:
            reply = ("error", (type(exc).__name__, traceback.format_exc()))
        sys.stdout.flush()
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result
            conn.send(("error", (type(exc).__name__, traceback.format_exc())))


if __name__ == "__main__":
    sys.exit(_worker_main(int(sys.argv[1])))
