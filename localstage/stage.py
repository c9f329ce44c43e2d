"""`python -m localstage`: the whole deployed API on loopback, in one foreground process tree.

PostgreSQL (a private cluster kept under the state directory, or DATABASE_URL) and DynamoDB (moto
in server mode) with template.yaml's tables, one worker pool per function of template.yaml (all
three from localstage.runtime), the HTTP API on 127.0.0.1:$PORT and the scheduled functions.
Ctrl-C or SIGTERM stops all of it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from localstage.lambda_runtime import ROOT, scheduled_event
from localstage.runtime import Backends, LocalBackends, StageError, at_once, close_pools, function_pools, redact
from localstage.sam_local import ENV_FILE_NAME, serve_containers
from localstage.seed import ADMIN_TOKEN_VARIABLE, examples
from localstage.server import Gateway, StageHTTPServer
from localstage.template import Schedule, Template, load_template
from localstage.workers import FunctionPool, HandlerError, InvokeFailure

log = logging.getLogger("localstage")

DEFAULT_PORT = 3000
DEFAULT_CONCURRENCY = 8
READY_TIMEOUT_SECONDS = 60.0
DYNAMODB_STATE_FILE = "dynamodb.json"


class StageStopped(Exception):
    """Ctrl-C or SIGTERM arrived while the stage was still starting."""


def state_dir() -> Path:
    """Where the stage keeps its cluster, lock and stage.json: $LOCAL_STAGE_DIR, else <repo>/.local."""
    configured = os.environ.get("LOCAL_STAGE_DIR")
    return Path(configured).resolve() if configured else ROOT / ".local"


def stage_file(directory: Path) -> Path:
    return directory / "stage.json"


def read_stage_file(directory: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(stage_file(directory).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data


# ---------------------------------------------------------------------------------------------
# One stage per state directory.


class StageLock:
    """An exclusive flock on <state>/stage.lock, held for the life of the stage; the file goes with it."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "stage.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    return False
                raise
            # The holder before us may have deleted the file between our open and our flock:
            # then we hold a lock on a file nobody else can see; start over.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return True
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)  # closing drops the lock
        self._fd = None


# ---------------------------------------------------------------------------------------------
# The stage.


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise StageError(f"{name} must be a whole number, not {raw!r}") from None


class Stage:
    def __init__(self) -> None:
        self.directory = state_dir()
        self.port = _int_env("PORT", DEFAULT_PORT)
        self.concurrency = max(1, _int_env("LOCAL_STAGE_CONCURRENCY", DEFAULT_CONCURRENCY))
        self.token = os.environ.get(ADMIN_TOKEN_VARIABLE) or secrets.token_urlsafe(24)
        self.token_generated = not os.environ.get(ADMIN_TOKEN_VARIABLE)
        self.stop_event = threading.Event()
        self._serving = False
        self._lock = StageLock(self.directory)
        self._cleanups: list[tuple[str, Any]] = []

    # Signals: during start-up they abort it (cleaning up what started); later they end the wait.
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stop_event.is_set():
            print(f"\n{signal.Signals(signum).name}: stopping the local stage...", file=sys.stderr, flush=True)
        self.stop_event.set()
        if not self._serving:
            raise StageStopped()

    def run(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._lock.acquire():
            running = read_stage_file(self.directory) or {}
            where = f" at {running['base_url']} (pid {running.get('pid')})" if running.get("base_url") else ""
            print(f"A local stage is already running{where} with state in {self.directory}.\n"
                  f"Stop it first (Ctrl-C in its terminal), or set LOCAL_STAGE_DIR for a separate stage.",
                  file=sys.stderr)
            return 1
        with contextlib.suppress(FileNotFoundError):
            stage_file(self.directory).unlink()  # left by a stage that was killed: its URLs are stale
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        for sig in previous:
            signal.signal(sig, self._on_signal)
        try:
            self._start()
            self._serving = True
            if self.stop_event.is_set():
                return 0
            self.stop_event.wait()
            return 0
        except StageStopped:
            return 0
        except StageError as exc:
            print(f"localstage: {exc}", file=sys.stderr)
            return 1
        except Exception:
            log.exception("the local stage failed")
            return 1
        finally:
            self._serving = True  # from here on a signal must not interrupt the clean-up
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _defer(self, what: str, action: Any) -> None:
        self._cleanups.append((what, action))

    def _shutdown(self) -> None:
        started = time.monotonic()
        for what, action in reversed(self._cleanups):
            step = time.monotonic()
            try:
                action()
            except Exception:
                log.exception("while stopping %s", what)
            log.debug("stopped %s in %.2f s", what, time.monotonic() - step)
        self._cleanups.clear()
        with contextlib.suppress(FileNotFoundError):
            stage_file(self.directory).unlink()
        self._lock.release()
        print(f"Local stage stopped ({time.monotonic() - started:.1f} s).", file=sys.stderr, flush=True)

    def _start(self) -> None:
        template = load_template()
        # The port first: when it is busy, say so before starting anything.
        try:
            httpd = StageHTTPServer(("127.0.0.1", self.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StageError(f"port {self.port} on 127.0.0.1 is busy (another program listens there); "
                                 f"set PORT to use another one, e.g. PORT={self.port + 1}") from None
            raise StageError(f"cannot listen on 127.0.0.1:{self.port}: {exc.strerror}") from None
        self._defer("the HTTP server", httpd.server_close)
        self.port = httpd.server_address[1]
        base_url = f"http://127.0.0.1:{self.port}"

        # The private cluster is supervised (restarted if its postmaster dies); DynamoDB's items are kept
        # in the state directory between runs, so that idempotency records survive a restart.
        local = LocalBackends(template, database_url=os.environ.get("DATABASE_URL"),
                              data_dir=self.directory / "pgdata", supervise=True,
                              dynamodb_state=self.directory / DYNAMODB_STATE_FILE)
        self._defer("PostgreSQL and DynamoDB", local.stop)
        backends = local.start()
        pools = function_pools(template, backends, admin_token=self.token, max_workers=self.concurrency)
        self._defer("the function workers", lambda: close_pools(pools))
        self._prewarm([pools[spec.logical_id] for spec in template.functions.values()
                       if spec.routes or spec.schedules])

        stage_file(self.directory).write_text(json.dumps({
            "base_url": base_url,
            "database_url": backends.database_url,
            "dynamodb_endpoint": backends.dynamodb_endpoint,
            "tables": backends.tables,
            "token": self.token,
            "pid": os.getpid(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, indent=2) + "\n", encoding="utf-8")
        os.chmod(stage_file(self.directory), 0o600)  # it holds the organizer token
        self._defer("the sam local access", serve_containers(self.directory, template, backends, self.token))

        httpd.gateway = Gateway(template.routes, pools)
        server_thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
        server_thread.start()

        def stop_http() -> None:
            httpd.shutdown()
            server_thread.join(5)

        self._defer("the HTTP server", stop_http)
        self._start_schedules(template.schedules, pools)
        self._self_check(base_url)
        self._banner(template, base_url, backends)

    def _prewarm(self, pools: list[FunctionPool]) -> None:
        """One warm worker per function, started side by side, so the first requests are fast."""
        started = time.monotonic()
        failures: list[str] = []

        def warm(pool: FunctionPool) -> None:
            try:
                pool.prewarm(1)
            except InvokeFailure as failure:
                failures.append(failure.message)

        at_once(warm, pools)
        if failures:
            raise StageError("a function could not start:\n" + "\n".join(failures))
        log.info("started %d functions in %.1f s", len(pools), time.monotonic() - started)

    def _start_schedules(self, schedules: list[Schedule], pools: dict[str, FunctionPool]) -> None:
        override = os.environ.get("LOCAL_STAGE_EXPIRY_INTERVAL", "").strip()
        for schedule in schedules:
            if not schedule.enabled:
                continue
            interval = schedule.interval_seconds
            if override:
                try:
                    interval = float(override)
                except ValueError:
                    raise StageError(f"LOCAL_STAGE_EXPIRY_INTERVAL must be a number of seconds, "
                                     f"not {override!r}") from None
            if interval is None or interval <= 0:
                log.warning("%s: schedule %s is not run locally (only rate() is)", schedule.function,
                            schedule.expression)
                continue
            thread = threading.Thread(target=self._run_schedule, args=(pools[schedule.function], interval),
                                      name=f"schedule-{schedule.function}", daemon=True)
            thread.start()
            self._defer(f"the schedule of {schedule.function}", lambda t=thread: t.join(10))
            log.info("%s: runs every %g s (%s)", schedule.function, interval, schedule.expression)

    def _run_schedule(self, pool: FunctionPool, interval: float) -> None:
        while not self.stop_event.wait(interval):
            try:
                invocation = pool.invoke(scheduled_event())
            except InvokeFailure as failure:
                if failure.kind != "closed":
                    log.error("%s (scheduled): %s", pool.name, failure.message)
                continue
            except HandlerError as error:
                log.error("%s (scheduled): unhandled %s\n%s", pool.name, error.error_type, error.trace)
                continue
            log.info("%s (scheduled): %s in %.0f ms", pool.name, json.dumps(invocation.result),
                     invocation.duration_ms)

    def _self_check(self, base_url: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        last = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base_url}/health", timeout=10) as reply:  # noqa: S310 - loopback
                    if reply.status == 200:
                        return
                    last = f"status {reply.status}"
            except urllib.error.HTTPError as exc:
                last = f"status {exc.code}: {exc.read()[:300]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise StageError(f"GET /health did not answer 200 within {READY_TIMEOUT_SECONDS:.0f} s ({last})")

    def _banner(self, template: Template, base_url: str, backends: Backends) -> None:
        routes = "\n".join(f"    {route.method:<6} {route.path:<40} {route.function}" for route in
                           sorted(template.routes, key=lambda r: (r.path, r.method)))
        token_note = f" (generated; set {ADMIN_TOKEN_VARIABLE} to choose it)" if self.token_generated else ""
        print(f"""
Local stage at {base_url}
  organizer token: {self.token}{token_note}
  database:        {redact(backends.database_url)}
  dynamodb:        {backends.dynamodb_endpoint} (tables {", ".join(backends.tables.values())})
  state:           {self.directory}
  sam local:       --env-vars {self.directory / ENV_FILE_NAME} (README, "sam local")
  routes:
{routes}

Try:
{examples(base_url, self.token)}

Ready: {base_url} (GET /health answered 200). Press Ctrl-C to stop.""", flush=True)


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("LOCAL_STAGE_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        stage = Stage()
    except StageError as exc:
        print(f"localstage: {exc}", file=sys.stderr)
        return 1
    return stage.run()
