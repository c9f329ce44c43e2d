"""Runs `python -m localstage` as a subprocess on a free port with its own state directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from localstage.lambda_runtime import ROOT
from localstage.postgres import PostgresCluster, free_port

ADMIN_TOKEN = "e2e-admin-token-0123456789"
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 60.0


def stage_env(directory: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment a developer would have: none of the test suite's own database settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "TEST_DATABASE_URL", "TICKETS_ADMIN_TOKEN", "PORT"}
           and not k.startswith(("AWS_", "POWERTOOLS_", "LOCAL_STAGE_"))}
    env.update({
        "PORT": str(port),
        "LOCAL_STAGE_DIR": str(directory),
        "TICKETS_ADMIN_TOKEN": ADMIN_TOKEN,
        "LOCAL_STAGE_EXPIRY_INTERVAL": "1",
        "PYTHONUNBUFFERED": "1",
    })
    if os.environ.get("LOCAL_STAGE_INIT_TIMEOUT"):  # the machine's pace, not a setting under test
        env["LOCAL_STAGE_INIT_TIMEOUT"] = os.environ["LOCAL_STAGE_INIT_TIMEOUT"]
    env.update(extra)
    return env


def new_state_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="tickets-e2e-stage-"))


def postgres_pids(data_dir: Path) -> list[int]:
    """Live (not zombie) processes whose command line names data_dir: the cluster's postmaster."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(data_dir) in cmdline and "postgres" in cmdline:
            found.append(int(entry.name))
    return found


class StageProcess:
    """One run of the stage; output goes to <dir>/stage-N.log."""

    runs = 0

    def __init__(self, directory: Path, port: int | None = None, **env: str) -> None:
        StageProcess.runs += 1
        self.directory = directory
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory.parent / f"{directory.name}-stage-{StageProcess.runs}.log"
        self.env = stage_env(directory, self.port, **env)
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.started_in = 0.0

    def start(self, *, wait: bool = True) -> StageProcess:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "localstage"], cwd=ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready()
        return self

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self) -> None:
        assert self.process is not None
        started = time.monotonic()
        while time.monotonic() - started < START_TIMEOUT_SECONDS:
            if self.process.poll() is not None:
                raise AssertionError(f"the stage exited with {self.process.returncode}:\n{self.output}")
            if "Ready:" in self.output:
                response = requests.get(f"{self.base_url}/health", timeout=10)
                assert response.status_code == 200, response.text
                self.info = json.loads((self.directory / "stage.json").read_text())
                self.started_in = time.monotonic() - started
                return
            time.sleep(0.2)
        raise AssertionError(f"the stage was not ready within {START_TIMEOUT_SECONDS:.0f} s:\n{self.output}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signals the stage and waits for it; returns its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"the stage did not stop within {STOP_TIMEOUT_SECONDS:.0f} s:\n"
                                     f"{self.output}") from None
        return self.process.returncode

    def kill_leftovers(self) -> None:
        """After a failed test: make sure nothing of this stage keeps running."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if postgres_pids(self.directory / "pgdata"):
            PostgresCluster(self.directory / "pgdata").stop()


def remove_state_dir(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    for log in directory.parent.glob(f"{directory.name}-stage-*.log"):
        log.unlink()
