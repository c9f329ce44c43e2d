"""The local API Gateway: an HTTP server that turns each request into the HTTP API payload 2.0
event of its route, invokes the route's function in its worker pool, and writes the response back.

Where API Gateway has its own answers (no route, a body over 10 MB, a function that timed out or
crashed) the stage answers in the contract's error shape, so clients see one format throughout.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

from localstage.lambda_runtime import AUTHORIZER_REFUSAL, apply_authorizer_result, authorizer_event, http_event
from localstage.template import Route, match_route
from localstage.workers import HandlerError, Invocation, InvokeFailure

log = logging.getLogger("localstage")

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
RETRY_AFTER_SECONDS = "1"
# Hop-by-hop and framing headers: the stage frames the response itself.
_FRAMING_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive"}
# Hop-by-hop request headers, which API Gateway consumes rather than forwards.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "expect", "proxy-connection"}


class BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @classmethod
    def error(cls, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
        return cls(status, [("Content-Type", "application/json"), *(headers or [])], error_body(code, message))


def build_event(route: Route, path_parameters: Mapping[str, str], *, method: str, raw_path: str, raw_query: str,
                headers: list[tuple[str, str]], body: bytes | None, source_ip: str, host: str) -> dict[str, Any]:
    """The payload 2.0 event API Gateway sends for this request."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key in _HOP_BY_HOP:
            continue
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    if body is not None:
        joined["content-length"] = str(len(body))  # a chunked upload arrives with its length
    forwarded = joined.get("x-forwarded-for")
    joined["x-forwarded-for"] = f"{forwarded}, {source_ip}" if forwarded else source_ip
    joined.setdefault("x-forwarded-proto", "http")
    if ":" in host:
        joined.setdefault("x-forwarded-port", host.rsplit(":", 1)[1])
    event = http_event(method, raw_path, route_key=route.route_key, path_parameters=path_parameters or None,
                       headers=joined, query=raw_query, body=body, source_ip=source_ip, host=host or "localhost")
    if cookies:
        event["cookies"] = cookies
    return event


def lambda_response(result: Any) -> Response:
    """An HTTP response from a function's result, as HTTP APIs read payload 2.0 responses."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # No statusCode: API Gateway infers a 200 with the result as its JSON body.
        text = result if isinstance(result, str) else json.dumps(result)
        return Response(200, [("Content-Type", "application/json")], text.encode())
    try:
        status = int(result["statusCode"])
    except (TypeError, ValueError):
        status = 0
    if not 100 <= status <= 599:
        raise ValueError(f"invalid statusCode {result.get('statusCode')!r}")
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        if str(name).lower() not in _FRAMING_HEADERS:
            headers.append((str(name), "" if value is None else str(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if str(name).lower() not in _FRAMING_HEADERS:
            headers.extend((str(name), str(value)) for value in values or [])
    headers.extend(("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or [])
    raw = result.get("body")
    body: bytes
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        body = base64.b64decode(str(raw), validate=False)
    elif isinstance(raw, str):
        body = raw.encode("utf-8")
    else:
        body = json.dumps(raw).encode()
    return Response(status, headers, body)


class Function(Protocol):
    """What the gateway invokes: a function's pool of workers (localstage.workers.FunctionPool)."""

    @property
    def name(self) -> str: ...

    def invoke(self, event: dict[str, Any]) -> Invocation: ...


class Gateway:
    """Routes requests to functions (by logical id); thread-safe when the functions are (a pool is)."""

    def __init__(self, routes: list[Route], functions: Mapping[str, Function]) -> None:
        self.routes = routes
        self.functions = functions

    def handle(self, method: str, target: str, *, headers: list[tuple[str, str]], body: bytes | None,
               source_ip: str, host: str) -> tuple[Response, str]:
        """The response, and a note for the access log (the function that answered, or why not)."""
        split = urlsplit(target)
        raw_path, raw_query = split.path or "/", split.query
        found, _path_known = match_route(self.routes, method, raw_path)
        if found is None:
            # API Gateway answers 404 for an unknown path and for a known one with another method.
            return Response.error(404, "not_found", f"No route for {method} {raw_path}."), "no route"
        event = build_event(found.route, found.path_parameters, method=method, raw_path=raw_path,
                            raw_query=raw_query, headers=headers, body=body, source_ip=source_ip, host=host)
        if found.route.authorizer is not None:
            # As API Gateway does: the route's Lambda authorizer first; a failure there is a 500
            # and a refusal a 403, each in API Gateway's own body.
            outcome, note = self._invoke(self.functions[found.route.authorizer], authorizer_event(event))
            if isinstance(outcome, Response):
                return Response(500, [("Content-Type", "application/json")],
                                b'{"message":"Internal Server Error"}'), f"authorizer: {note}"
            if not apply_authorizer_result(event, outcome.result):
                return Response(403, [("Content-Type", "application/json")], AUTHORIZER_REFUSAL.encode()), note
        function = self.functions[found.route.function]
        outcome, note = self._invoke(function, event)
        if isinstance(outcome, Response):
            return outcome, note
        try:
            response = lambda_response(outcome.result)
        except (ValueError, TypeError, binascii.Error) as exc:
            log.error("%s: malformed Lambda response (%s): %.500r", function.name, exc, outcome.result)
            return (Response.error(500, "internal_error", "The function returned a malformed response."),
                    f"{function.name} malformed response")
        return response, note

    @staticmethod
    def _invoke(function: Function, event: dict[str, Any]) -> tuple[Invocation | Response, str]:
        """The invocation, or the error response API Gateway would give when it failed."""
        try:
            invocation = function.invoke(event)
        except InvokeFailure as failure:
            log.error("%s", failure.message)
            retry = [("Retry-After", RETRY_AFTER_SECONDS)]
            message = {
                "timeout": "The function timed out; retry shortly.",
                "crash": "The function's execution environment failed; retry shortly.",
                "init": "The function could not start; retry shortly.",
                "closed": "The local stage is stopping.",
            }.get(failure.kind, "The function is unavailable; retry shortly.")
            return Response.error(503, "unavailable", message, retry), f"{function.name} {failure.kind}"
        except HandlerError as error:
            log.error("%s: unhandled %s\n%s", function.name, error.error_type, error.trace)
            return (Response.error(500, "internal_error", "An unexpected error occurred; it has been logged."),
                    f"{function.name} unhandled {error.error_type}")
        note = f"{function.name} {invocation.duration_ms:.0f} ms"
        if invocation.init_duration_ms is not None:
            note += f" (cold start, init {invocation.init_duration_ms:.0f} ms)"
        return invocation, note


class StageHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # bursts of simultaneous connections, as a load test makes

    def __init__(self, address: tuple[str, int], gateway: Gateway | None = None) -> None:
        super().__init__(address, _RequestHandler)
        self.gateway = gateway  # set once the functions are ready: until then the stage answers 503


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, a kept-alive connection waits
    # for the client's delayed ACK (~40 ms) before the body leaves.
    disable_nagle_algorithm = True
    server: StageHTTPServer

    def version_string(self) -> str:
        return "localstage"

    def handle_expect_100(self) -> bool:
        """Refuses an oversized body before the client sends it (curl asks first for large uploads)."""
        try:
            too_large = int(self.headers.get("Content-Length") or 0) > MAX_REQUEST_BYTES
        except ValueError:
            too_large = False
        if too_large:
            self.close_connection = True
            response = Response.error(413, "payload_too_large", "The request body is larger than 10 MB.")
            self._write(response, str(uuid.uuid4()))
            log.info('%s "%s %s" 413 (refused before the body was sent)', self.client_address[0], self.command,
                     self.path)
            return False
        return super().handle_expect_100()

    def _serve(self) -> None:
        started = time.monotonic()
        request_id = str(uuid.uuid4())
        note = ""
        try:
            body = self._read_body()
        except BadRequest as rejection:
            self.close_connection = True
            response = Response.error(rejection.status, rejection.code, rejection.message)
            note = "rejected"
        else:
            gateway = self.server.gateway
            if gateway is None:
                response = Response.error(503, "unavailable", "The local stage is starting; retry shortly.",
                                          [("Retry-After", RETRY_AFTER_SECONDS)])
                note = "starting"
            else:
                response, note = gateway.handle(self.command, self.path, headers=list(self.headers.items()),
                                                body=body, source_ip=self.client_address[0],
                                                host=self.headers.get("Host", ""))
        self._write(response, request_id)
        log.info('%s "%s %s" %d %d B %.0f ms  %s', self.client_address[0], self.command, self.path,
                 response.status, len(response.body), (time.monotonic() - started) * 1000, note)

    # BaseHTTPRequestHandler calls do_<METHOD>: every method goes to the gateway, which routes it, so
    # that a method no route has (TRACE, PROPFIND, ...) gets API Gateway's 404, never http.server's 501.
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve  # noqa: N815

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return None
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError(length_header)
        except ValueError:
            raise BadRequest(400, "bad_request", "The Content-Length header is not a number.") from None
        if length > MAX_REQUEST_BYTES:
            raise BadRequest(413, "payload_too_large", "The request body is larger than 10 MB.")
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise BadRequest(400, "bad_request", "The request body ended before its Content-Length.")
        return body if body else None

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest(400, "bad_request", "The chunked request body is malformed.") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            total += size
            if total > MAX_REQUEST_BYTES:
                raise BadRequest(413, "payload_too_large", "The request body is larger than 10 MB.")
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise BadRequest(400, "bad_request", "The chunked request body ended early.")
            chunks.append(chunk)
            self.rfile.readline(1024)
        body = b"".join(chunks)
        return body if body else None

    def _write(self, response: Response, request_id: str) -> None:
        try:
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Apigw-Requestid", request_id)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)
