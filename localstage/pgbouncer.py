"""PgBouncer in transaction pooling in front of a private cluster: the RDS Proxy stand-in.

    python -m localstage.pgbouncer [--pool-size N] -- COMMAND [ARGS...]      (make test-pgbouncer)

Starts a throwaway PostgreSQL cluster (localstage.postgres) and PgBouncer in front of it, in
transaction pooling with a small pool (`default_pool_size`, 5 by default), runs COMMAND with
DATABASE_URL pointing at PgBouncer and DIRECT_DATABASE_URL at the cluster itself, stops both and
exits with COMMAND's status. Like RDS Proxy, transaction pooling hands each transaction whatever
server connection is free: anything that leans on session state (a prepared statement, a session
SET, a session advisory lock, a temporary table) breaks behind it, and a connection budget smaller
than the number of clients makes them queue.

PgBouncer signs clients in by name only (auth_type trust, as the cluster does): the users it
knows are the cluster's superuser and the functions' role (migrations/0005_roles.sql). Like
PostgreSQL it refuses to run as root; under root it runs as the cluster's server user.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from localstage.postgres import DATABASE, SUPERUSER, PostgresCluster, free_port, server_user

DEFAULT_POOL_SIZE = 5
# Every client PgBouncer admits: the suite's races run 60 execution environments of a function at once.
MAX_CLIENT_CONNECTIONS = 2000
START_TIMEOUT_SECONDS = 20.0
# Who may sign in through PgBouncer: the cluster's superuser (the tests, the migrations) and the
# role the functions sign in as on AWS.
USERS = (SUPERUSER, "tickets_app")
DIRECT_URL_VARIABLE = "DIRECT_DATABASE_URL"


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or next(
        (path for path in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(path, os.X_OK)), None)
    if found is None:
        raise RuntimeError("pgbouncer was not found; install it (Debian: apt-get install pgbouncer; "
                           "`make test-pgbouncer` does)")
    return found


class PgBouncer:
    """One PgBouncer, its configuration, log and pid file in `directory`, in front of 127.0.0.1:server_port."""

    def __init__(self, directory: Path, server_port: int, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.directory = directory
        self.server_port = server_port
        self.pool_size = pool_size
        self.port = free_port()
        self.log_file = directory / "pgbouncer.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def _write_config(self) -> Path:
        users = self.directory / "userlist.txt"
        users.write_text("".join(f'"{user}" ""\n' for user in USERS), encoding="utf-8")
        config = self.directory / "pgbouncer.ini"
        config.write_text(f"""\
[databases]
; every database of the cluster, under its own name (the tests create some of their own)
* = host=127.0.0.1 port={self.server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = transaction
default_pool_size = {self.pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = {MAX_CLIENT_CONNECTIONS}
server_reset_query =
admin_users = {SUPERUSER}
logfile = {self.log_file}
pidfile = {self.directory / "pgbouncer.pid"}
log_connections = 0
log_disconnections = 0
""", encoding="utf-8")
        user = server_user()
        if user is not None:
            self.directory.chmod(self.directory.stat().st_mode | 0o711)
            for path in (self.directory, users, config):
                os.chown(path, user.pw_uid, user.pw_gid)
        return config

    def start(self) -> str:
        config = self._write_config()
        command = [pgbouncer_binary(), "-q"]
        user = server_user()
        if user is not None:
            command += ["-u", user.pw_name]  # it refuses root
        self._process = subprocess.Popen([*command, str(config)], stdin=subprocess.DEVNULL, cwd="/",
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise RuntimeError(f"pgbouncer exited with {self._process.returncode}: {error.strip()}\n"
                                   f"{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self.url
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen on 127.0.0.1:{self.port} within "
                           f"{START_TIMEOUT_SECONDS:.0f} s\n{self.log_tail()}")

    def stats(self) -> dict[str, dict[str, str]]:
        """SHOW STATS of the admin console, by database: transactions, queries, wait times served so far."""
        import psycopg  # noqa: PLC0415 - the server side only

        with psycopg.connect(f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/pgbouncer", autocommit=True) as conn:
            result = conn.pgconn.exec_(b"SHOW STATS")  # the admin console speaks the simple protocol only
            names = [(result.fname(column) or b"").decode() for column in range(result.nfields)]
            rows = [{name: (result.get_value(row, column) or b"").decode() for column, name in enumerate(names)}
                    for row in range(result.ntuples)]
        return {row["database"]: row for row in rows}

    def pooler_errors(self) -> list[str]:
        """The errors PgBouncer logged (a client refused, a server connection lost)."""
        with contextlib.suppress(OSError):
            return [line for line in self.log_file.read_text(errors="replace").splitlines()
                    if " ERROR " in line or "pooler error" in line]
        return []

    def log_tail(self, characters: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_file.read_text(errors="replace")[-characters:]
        return ""

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # safe shutdown: closes its connections
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stderr is not None:
            self._process.stderr.close()
        self._process = None


class PooledCluster:
    """A throwaway cluster with PgBouncer in front: `with PooledCluster() as (pooled_url, direct_url)`."""

    def __init__(self, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="localstage-pgbouncer-"))
        self.cluster = PostgresCluster(self.scratch / "data", durable=False)
        self.bouncer: PgBouncer | None = None
        self.pool_size = pool_size

    def start(self) -> tuple[str, str]:
        try:
            direct = self.cluster.start()
            assert self.cluster.port is not None
            bouncer_dir = self.scratch / "pgbouncer"
            bouncer_dir.mkdir()
            self.bouncer = PgBouncer(bouncer_dir, self.cluster.port, pool_size=self.pool_size)
            return self.bouncer.start(), direct
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.bouncer is not None:
            self.bouncer.stop()
        self.cluster.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> tuple[str, str]:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m localstage.pgbouncer", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool-size", type=int, default=DEFAULT_POOL_SIZE,
                        help="server connections per database and user (default_pool_size)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command to run is required: python -m localstage.pgbouncer -- COMMAND [ARGS...]")
    pooled = PooledCluster(pool_size=args.pool_size)
    try:
        pooled_url, direct_url = pooled.start()
    except RuntimeError as exc:
        print(f"localstage.pgbouncer: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"PgBouncer (transaction pooling, default_pool_size={args.pool_size}) at {pooled_url}, "
              f"in front of PostgreSQL at {direct_url}", file=sys.stderr, flush=True)
        env = {**os.environ, "DATABASE_URL": pooled_url, DIRECT_URL_VARIABLE: direct_url}
        env.pop("TEST_DATABASE_URL", None)
        with subprocess.Popen(command, env=env) as child:
            try:
                status = child.wait()
            except KeyboardInterrupt:
                child.send_signal(signal.SIGINT)
                status = child.wait()
        report(pooled)
        return status
    finally:
        pooled.stop()


def report(pooled: PooledCluster) -> None:
    """What went through PgBouncer: its transactions and queries, and the errors it logged."""
    if pooled.bouncer is None:
        return
    try:
        served = pooled.bouncer.stats()
    except Exception as exc:
        print(f"PgBouncer: no statistics ({exc})", file=sys.stderr)
        return
    totals = {name: sum(int(row.get(name) or 0) for database, row in served.items() if database != "pgbouncer")
              for name in ("total_xact_count", "total_query_count", "total_wait_time")}
    errors = pooled.bouncer.pooler_errors()
    print(f"PgBouncer served {totals['total_xact_count']} transactions, {totals['total_query_count']} queries "
          f"(clients waited {totals['total_wait_time'] / 1e6:.1f} s in all for a server connection); "
          f"{len(errors)} pooler errors", file=sys.stderr, flush=True)
    for line in errors[:10]:
        print(f"  {line}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
