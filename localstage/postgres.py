"""A private PostgreSQL cluster started with the machine's initdb/pg_ctl.

Used by the test suite (a throwaway cluster) and by the local stage (a cluster kept under
.local/). PostgreSQL refuses to run as root, so under root the server runs as an unprivileged
system user that owns the data directory.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

log = logging.getLogger("localstage")

SERVER_USER = "postgres"
DATABASE = "tickets"
SUPERUSER = "postgres"


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bin_dir() -> Path:
    """Where the PostgreSQL server programs are (initdb, pg_ctl, pgbench)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) were not found; install postgresql")
    return Path(candidates[0]).parent


def server_user() -> pwd.struct_passwd | None:
    """The user to run the server as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SERVER_USER], check=True)  # noqa: S607
        return pwd.getpwnam(SERVER_USER)


class PostgresCluster:
    """One cluster in data_dir, listening on 127.0.0.1 only (no Unix socket)."""

    def __init__(self, data_dir: Path, *, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.log_file = self.data_dir.parent / "postgres.log"
        self.durable = durable
        self.port: int | None = None
        self._user = server_user()
        self._bin = bin_dir()

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the cluster is not running")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            [str(self._bin / args[0]), *args[1:]],
            check=check, capture_output=True, text=True, cwd="/", **kwargs,
        )

    def _own(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def postmaster_pid(self) -> int | None:
        """The pid postmaster.pid names, or None when there is no such file."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        """True while the postmaster of postmaster.pid is alive (not gone, not a zombie)."""
        pid = self.postmaster_pid()
        if pid is None:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        state = stat.rsplit(")", 1)[-1].split()[0]  # the field after the command, which may hold spaces
        return state not in ("Z", "X")

    def init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._user is not None:
            # The server user must be able to reach its data directory (mkdtemp makes 0700 folders).
            self.data_dir.parent.chmod(self.data_dir.parent.stat().st_mode | 0o711)
        self._own(self.data_dir)
        self.log_file.touch()
        self._own(self.log_file)
        self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions")

    def start(self, port: int | None = None) -> str:
        if not self.initialized():
            self.init()
        self.port = port or free_port()
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            "-c unix_socket_directories=''",
            "-c max_connections=300",
            "-c timezone=UTC",
        ]
        if not self.durable:
            # A throwaway cluster: trade crash safety for speed.
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        result = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                           "-t", "60", "-o", " ".join(options), "start", check=False)
        if result.returncode != 0:
            log_tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr.strip()}\n{log_tail}")
        self._create_database()
        return self.url

    def _create_database(self) -> None:
        import psycopg  # noqa: PLC0415 - only the server side needs it

        with psycopg.connect(f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres",
                             autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(f"CREATE DATABASE {DATABASE}")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-m", "fast", "stop", check=False)
        self.port = None


class PostgresSupervisor:
    """Watches a started cluster and restarts it when its postmaster dies (killed, crashed, stopped
    behind the stage's back), on the same port, so that every connection string handed out stays
    right. Meanwhile connections are refused, and the functions answer 503 with Retry-After.
    """

    def __init__(self, cluster: PostgresCluster, *, interval: float = 0.5) -> None:
        self.cluster = cluster
        self.interval = interval
        self.restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="postgres-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(90)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.cluster.running():
                self._restart()

    def _restart(self) -> None:
        port = self.cluster.port
        gone = time.monotonic()
        log.error("PostgreSQL (port %s) is not running; restarting it", port)
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            try:
                # The server processes the dead postmaster left may hold its shared memory for a moment;
                # then the start fails, and the next attempt comes a second later.
                self.cluster.start(port=port)
            except Exception as exc:
                log.warning("PostgreSQL did not start yet (attempt %d): %s", attempt, str(exc).splitlines()[0])
                self._stop.wait(1.0)
                continue
            self.restarts += 1
            log.warning("PostgreSQL restarted on port %s in %.1f s (restart %d)", port, time.monotonic() - gone,
                        self.restarts)
            return
