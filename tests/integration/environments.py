"""Lambda execution environments for the race tests: one process each, one invocation at a time.

Threads in one process cannot stand in for separate environments. Powertools keeps per-invocation
state in the process, not per thread: `ApiGatewayResolver.resolve` stores the event and context on
the class (`BaseRouter.current_event`, `BaseRouter.lambda_context`), so every resolver, even one in
another copy of the function module, reads the event that some other thread resolved last; and
the idempotency layer's `persistence_store` and `config` are module objects of the shared layer.
Lambda never runs two invocations at once in one environment (Lambda Managed Instances run
concurrent Python requests in separate processes too), so this is only a test-harness concern.

Each `LambdaEnvironment` is a process forked from a server that has already imported the layer
and the handlers (the init phase), so the 60 environments of a race start in a second or two;
after the fork each has its own module state, boto3 client and database connection, as a Lambda
environment has. A test thread drives one environment through `EnvironmentApi`, which is `Api`
with `invoke_raw` sent to that environment.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import traceback
from multiprocessing.connection import Connection
from typing import Any

from localstage.lambda_runtime import LambdaContext, load_handler
from tests.support.api import Api

PRELOAD = "tests.integration._environment_init"
INVOKE_TIMEOUT_SECONDS = 60.0


class EnvironmentFailure(AssertionError):
    """An environment that failed to answer: the handler raised, timed out or the process died."""


def _serve(conn: Connection, environ: dict[str, str]) -> None:
    """The environment's loop: one invocation at a time, module state kept between them."""
    os.environ.update(environ)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        event, code_uri, function = message
        try:
            handler = load_handler(code_uri)
            reply: tuple[str, Any] = ("ok", handler(event, LambdaContext(function_name=function)))
        except BaseException:
            reply = ("error", traceback.format_exc())
        conn.send(reply)


class LambdaEnvironment:
    """One execution environment: a process that runs one invocation at a time."""

    def __init__(self, context: Any) -> None:
        self.conn, child_end = multiprocessing.Pipe()
        self.process = context.Process(target=_serve, args=(child_end, dict(os.environ)), daemon=True)
        self.process.start()
        child_end.close()

    def invoke(self, event: dict[str, Any], code_uri: str, function: str) -> Any:
        self.conn.send((event, code_uri, function))
        if not self.conn.poll(INVOKE_TIMEOUT_SECONDS):
            raise EnvironmentFailure(f"{function} in environment {self.process.pid}: no answer within "
                                    f"{INVOKE_TIMEOUT_SECONDS:g}s")
        try:
            kind, payload = self.conn.recv()
        except EOFError as exc:
            raise EnvironmentFailure(f"environment {self.process.pid} exited "
                                    f"(exit code {self.process.exitcode})") from exc
        if kind == "error":
            raise EnvironmentFailure(f"{function} raised in environment {self.process.pid}:\n{payload}")
        return payload

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()


class EnvironmentApi(Api):
    """`Api` whose every invocation (authorizer included) runs in one environment."""

    def __init__(self, admin_token: str, environment: LambdaEnvironment) -> None:
        super().__init__(admin_token)
        self.environment = environment

    def invoke_raw(self, event: dict[str, Any], code_uri: str, function: str = "local") -> Any:
        return self.environment.invoke(event, code_uri, function)


class LambdaEnvironments:
    """`count` environments; `apis[n]` is the client of environment n, for race thread n."""

    def __init__(self, count: int, admin_token: str) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([PRELOAD])
        self.environments: list[LambdaEnvironment] = []
        try:
            for _ in range(count):
                self.environments.append(LambdaEnvironment(context))
        except BaseException:
            self.stop()
            raise
        self.apis = [EnvironmentApi(admin_token, environment) for environment in self.environments]

    def __len__(self) -> int:
        return len(self.apis)

    def __getitem__(self, index: int) -> EnvironmentApi:
        return self.apis[index]

    def stop(self) -> None:
        for environment in self.environments:
            environment.stop()
