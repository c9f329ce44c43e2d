"""`sam local invoke` and `sam local start-api` against the local stage's stores.

The stage writes <state>/sam-env.json (.local/sam-env.json) for SAM CLI's `--env-vars`: for every
function of template.yaml, a value for every variable the function declares, taken from the
environment the stage gives that function, with the stage's services as a container reaches them
(host.docker.internal). Every declared variable is in the file because SAM overrides nothing else
and fills the rest itself: an unresolved !Ref becomes the resource's logical id (IDEMPOTENCY_TABLE
would read "IdempotencyTable"), and a variable of the developer's shell of the same name wins over
the template. What the file cannot give, SAM gives: the region and credentials (`--region
us-east-1`; the developer's credentials or SAM's placeholders, which moto takes alike).

SAM CLI (1.170) starts its containers on Docker's default bridge network whatever `--docker-network`
says (`host` is accepted and ignored), so a container reaches this machine through the bridge:
host.docker.internal, which Docker Desktop resolves itself and Docker Engine on Linux with
`--add-host host.docker.internal:host-gateway`, the bridge's own address. The stage's PostgreSQL
(trust sign-in) and DynamoDB listen on 127.0.0.1 only; where a Docker bridge exists, a relay on its
address forwards the containers' connections to them, so nothing listens on a public interface.

`make invoke ... ENV_VARS=.local/sam-env.json` runs a function with the environment SAM would give
its container (`container_environment`), on this machine, where host.docker.internal is 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import select
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from localstage.runtime import Backends, function_environment, process_environment
from localstage.template import FunctionSpec, Template

log = logging.getLogger("localstage")

ENV_FILE_NAME = "sam-env.json"
CONTAINER_HOST = "host.docker.internal"  # this machine, as a container sees it
LOOPBACK = "127.0.0.1"
LOOPBACK_NAMES = (LOOPBACK, "localhost")  # a DATABASE_URL on this machine may name it either way
DOCKER_BRIDGE = "docker0"  # where `host-gateway` leads on Docker Engine (Linux)
REGION = "us-east-1"  # the stage's DynamoDB tables are in this region (moto keeps one set per region)
# What SAM gives a container besides the template's variables, as far as the functions read it
# (samcli/local/lambdafn/env_vars.py, with no credentials configured and --region us-east-1).
SAM_VARIABLES = {
    "AWS_SAM_LOCAL": "true",  # Powertools' Tracer switches itself off on it
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "defaultkey",
    "AWS_SECRET_ACCESS_KEY": "defaultsecret",
}

EnvVars = dict[str, dict[str, str]]


def seen_from_containers(backends: Backends) -> Backends:
    """The services' addresses as a container reaches them: 127.0.0.1 becomes host.docker.internal."""
    return Backends(database_url=_rehost(backends.database_url, LOOPBACK_NAMES, CONTAINER_HOST),
                    dynamodb_endpoint=_rehost(backends.dynamodb_endpoint, LOOPBACK_NAMES, CONTAINER_HOST),
                    tables=dict(backends.tables))


def env_vars(template: Template, backends: Backends, admin_token: str) -> EnvVars:
    """The --env-vars file: per function, every variable it declares, as the stage sets it ('' when unset)."""
    remote = seen_from_containers(backends)
    file: EnvVars = {}
    for spec in template.functions.values():
        environment = function_environment(template, spec, remote, admin_token)
        file[spec.logical_id] = {name: environment.get(name, "") for name in spec.environment}
    return file


def container_environment(template: Template, spec: FunctionSpec, file: Mapping[str, Any]) -> dict[str, str]:
    """What SAM gives the function's container: its own variables, then each variable the function
    declares, from the file (the function's entry over "Parameters") or else from the template."""
    overrides = {**(file.get("Parameters") or {}), **(file.get(spec.logical_id) or {})}
    env = {**SAM_VARIABLES, "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb)}
    for name, value in spec.environment.items():
        env[name] = str(overrides[name]) if name in overrides else _sam_value(template, value)
    return env


def host_environment(template: Template, spec: FunctionSpec, file: Mapping[str, Any]) -> dict[str, str]:
    """container_environment, for a process on this machine: where the container has
    host.docker.internal, this machine has 127.0.0.1."""
    container = container_environment(template, spec, file)
    return {**process_environment(), **{name: _rehost(value, (CONTAINER_HOST,), LOOPBACK)
                                        for name, value in container.items()}}


def read_env_file(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(entry, dict) for entry in data.values()):
        raise ValueError(f"{path}: not an --env-vars file ({{\"FunctionLogicalId\": {{\"VAR\": \"value\"}}}})")
    return data


def _sam_value(template: Template, value: Any) -> str:
    """A template value as SAM CLI resolves it: !Ref gives a parameter's default or a resource's logical id."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        name = str(value["Ref"])
        return str(template.parameters[name].get("Default", "")) if name in template.parameters else name
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if isinstance(value, (dict, list)) or value is None else str(value)


def _rehost(url: str, hosts: tuple[str, ...], new: str) -> str:
    """url with its host, when one of `hosts`, replaced by `new` (any other value unchanged)."""
    parts = urlsplit(url)
    if not parts.scheme or parts.hostname not in hosts or parts.port is None:
        return url
    credentials, at, _ = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{credentials}{at}{new}:{parts.port}").geturl()


# ---------------------------------------------------------------------------------------------
# The containers' way in: a relay on the Docker bridge's address.


def interface_address(interface: str) -> str | None:
    """The IPv4 address of a network interface (Linux), or None when there is no such interface."""
    siocgifaddr = 0x8915
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            packed = fcntl.ioctl(probe.fileno(), siocgifaddr, struct.pack("256s", interface.encode()[:15]))
    except OSError:
        return None
    return socket.inet_ntoa(packed[20:24])


class _Forward(socketserver.BaseRequestHandler):
    server: _RelayServer

    def handle(self) -> None:
        try:
            upstream = socket.create_connection(self.server.target, timeout=5)
        except OSError:
            return
        with upstream, contextlib.suppress(OSError):  # either side hanging up ends the connection
            upstream.settimeout(None)
            peers = {self.request: upstream, upstream: self.request}
            while not self.server.stopping.is_set():
                readable, _, _ = select.select(list(peers), [], [], 0.5)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)


class _RelayServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], stopping: threading.Event) -> None:
        self.target = target
        self.stopping = stopping
        super().__init__(listen, _Forward)


class Relay:
    """Forwards connections to (address, port) to (127.0.0.1, port), for each port: a container on
    the Docker bridge reaches the stage's loopback-only services through it."""

    def __init__(self, address: str, ports: list[int]) -> None:
        self._stopping = threading.Event()
        self._servers: list[_RelayServer] = []
        try:
            for port in ports:
                self._servers.append(_RelayServer((address, port), (LOOPBACK, port), self._stopping))
        except OSError:
            self.stop()
            raise
        for server in self._servers:
            threading.Thread(target=server.serve_forever, name=f"relay-{server.target[1]}", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()


def serve_containers(directory: Path, template: Template, backends: Backends, admin_token: str) -> Callable[[], None]:
    """Writes <directory>/sam-env.json and, where a Docker bridge exists, starts the relay; returns
    what undoes both (the file names this run's ports, and holds the organizer token)."""
    path = directory / ENV_FILE_NAME
    with open(path, "w", encoding="utf-8", opener=lambda name, flags: os.open(name, flags, 0o600)) as out:
        out.write(json.dumps(env_vars(template, backends, admin_token), indent=2) + "\n")
    os.chmod(path, 0o600)  # also when an earlier run left the file
    relay: Relay | None = None
    bridge = interface_address(DOCKER_BRIDGE)
    ports = [port for url in (backends.database_url, backends.dynamodb_endpoint)
             if urlsplit(url).hostname in LOOPBACK_NAMES and (port := urlsplit(url).port) is not None]
    if bridge is not None and ports:
        try:
            relay = Relay(bridge, ports)
        except OSError as exc:
            log.warning("sam local: cannot listen on the Docker bridge %s (%s); containers will not reach the stage",
                        bridge, exc.strerror)
        else:
            log.info("sam local: containers reach the stage through %s (ports %s)", bridge,
                     ", ".join(map(str, ports)))

    def undo() -> None:
        if relay is not None:
            relay.stop()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    return undo
