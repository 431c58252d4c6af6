"""The common machinery of the fake Google REST APIs (Cloud Storage JSON API, Compute Engine).

A fake declares routes with `@route("GET", r"/storage/v1/b/(?P<bucket>[^/]+)/iam")`; the handler
gets a `Request` and returns `(status, json_body)` or `(status, json_body, headers)` (a body of
bytes goes out as it is), or raises
`HttpError`, which answers in Google's error format:

    {"error": {"code": 412, "message": "...", "errors": [{"reason": "conditionNotMet", ...}]}}

Like the gRPC fakes, it records every call (`Call("POST /compute/v1/...", Request)`) and can be
told to fail the next N calls (`fail_next(2, 503)`), or to drop the connection (`status=0`).
"""

from __future__ import annotations

import json
import re
import threading
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.grpc_server import GATE_WAIT_SECONDS

REASONS = {
    400: ("badRequest", "INVALID_ARGUMENT"),
    403: ("forbidden", "PERMISSION_DENIED"),
    404: ("notFound", "NOT_FOUND"),
    409: ("alreadyExists", "ALREADY_EXISTS"),
    412: ("conditionNotMet", "FAILED_PRECONDITION"),
    429: ("rateLimitExceeded", "RESOURCE_EXHAUSTED"),
    500: ("backendError", "INTERNAL"),
    503: ("backendError", "UNAVAILABLE"),
}


class HttpError(Exception):
    def __init__(self, status: int, message: str, *, reason: str | None = None, details: tuple = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or REASONS.get(status, ("error", "UNKNOWN"))[0]
        self.details = details  # google.rpc detail objects in their JSON form (ErrorInfo, ...)

    def body(self) -> dict:
        error = {
            "code": self.status,
            "message": self.message,
            "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
            "status": REASONS.get(self.status, ("", "UNKNOWN"))[1],
        }
        if self.details:
            error["details"] = list(self.details)
        return {"error": error}


def service_disabled(service: str, title: str = "", project_number: str = "123456789012") -> HttpError:
    """403 as Google's REST APIs answer a call to an API the project has not enabled."""
    from tests.fakes.grpc_server import disabled_message

    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "SERVICE_DISABLED",
        "domain": "googleapis.com",
        "metadata": {"service": service, "consumer": f"projects/{project_number}"},
    }
    message = disabled_message(service, title, project_number)
    return HttpError(403, message, reason="accessNotConfigured", details=(info,))


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]  # the last value of each parameter
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    #: every value of each parameter, e.g. ?permissions=a&permissions=b
    repeated: dict[str, list[str]] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class Call:
    method: str  # "GET /storage/v1/b/bucket/o/name"
    request: Request


@dataclass
class _Failure:
    remaining: int
    status: int
    message: str
    reason: str | None
    route: str | None
    after: bool
    error: HttpError | None = None


def route(method: str, pattern: str):
    def mark(fn):
        fn._route = (method, re.compile(f"^{pattern}$"))
        return fn

    return mark


class RestFake:
    #: the API this fake is, as Service Usage names it: refused while the project has it disabled.
    api = ""

    def __init__(self):
        from tests.fakes.project import FakeProject

        self.project = FakeProject()  # start_fakes gives every fake the same one
        self.lock = threading.RLock()
        self.calls: list[Call] = []
        self._failures: list[_Failure] = []
        self._routes = [
            (*getattr(type(self), name)._route, getattr(self, name))
            for name in dir(type(self))
            if hasattr(getattr(type(self), name), "_route")
        ]
        self._server: ThreadingHTTPServer | None = None
        self.port: int | None = None
        self.gate = threading.Event()  # cleared: every call waits (see Fakes.pause)
        self.gate.set()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> RestFake:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed ACK

            def log_message(self, *args):
                pass

            def _handle(self):
                fake._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self._failures.clear()
            self.gate.set()
            self.reset_state()

    def reset_state(self) -> None:
        """Subclasses clear their resources here."""

    def clear_failures(self) -> None:
        """Forget the errors `fail_next` still has to give."""
        with self.lock:
            self._failures.clear()

    # --- test controls -----------------------------------------------------------------------

    def fail_next(
        self,
        times: int = 1,
        status: int = 503,
        message: str = "The service is currently unavailable.",
        *,
        reason: str | None = None,
        route: str | None = None,
        after: bool = False,
        error: HttpError | None = None,
    ) -> None:
        """Answer the next `times` calls (whose "METHOD /path" contains `route`, or any) with an error
        (`error` as given, or one of `status`, `message` and `reason`).

        `status=0` drops the connection without an answer. `after=True` lets the call take effect first.
        """
        with self.lock:
            self._failures.append(_Failure(times, status, message, reason, route, after, error))

    def methods(self) -> list[str]:
        with self.lock:
            return [call.method for call in self.calls]

    def requests(self, contains: str) -> list[Request]:
        with self.lock:
            return [call.request for call in self.calls if contains in call.method]

    def clear_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    # --- dispatch ----------------------------------------------------------------------------

    def _take_failure(self, label: str) -> _Failure | None:
        for failure in self._failures:
            if failure.remaining > 0 and (failure.route is None or failure.route in label):
                failure.remaining -= 1
                if failure.remaining == 0:
                    self._failures.remove(failure)
                return failure
        return None

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        self.gate.wait(GATE_WAIT_SECONDS)
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        repeated = parse_qs(parts.query)
        request = Request(
            method=handler.command,
            path=unquote(parts.path),
            query={key: values[-1] for key, values in repeated.items()},
            headers={key.lower(): value for key, value in handler.headers.items()},
            body=body,
            repeated=repeated,
        )
        dropped, failure = self._record(handler, f"{handler.command} {request.path}", request)
        if dropped:
            return
        try:
            if self.api and self.project.is_disabled(self.api):
                raise service_disabled(self.api)
            if failure is not None and not failure.after:
                raise failure.error or HttpError(failure.status, failure.message, reason=failure.reason)
            result = self._route(request, raw_path=parts.path)
            if failure is not None:
                raise failure.error or HttpError(failure.status, failure.message, reason=failure.reason)
        except HttpError as exc:
            result = (exc.status, exc.body())
        except Exception as exc:
            traceback.print_exc()
            result = (500, HttpError(500, f"fake crashed: {exc!r}").body())
        status, payload, *rest = result
        if isinstance(payload, bytes):  # a body that is not JSON (its route sets the Content-Type)
            data = payload
        else:
            data = json.dumps(payload).encode() if payload is not None else b""
        self._send(
            handler,
            status,
            data,
            {"Content-Type": "application/json; charset=UTF-8", **(rest[0] if rest else {})},
        )

    def _record(
        self, handler: BaseHTTPRequestHandler, label: str, request: Request
    ) -> tuple[bool, _Failure | None]:
        """Record the call and take the failure injected for it; True when that drops the connection."""
        with self.lock:
            self.calls.append(Call(label, request))
            failure = self._take_failure(label)
        if failure is not None and failure.status == 0:
            handler.close_connection = True
            handler.connection.close()
            return True, None
        return False, failure

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, request: Request, *, raw_path: str):
        for method, pattern, fn in self._routes:
            if method != request.method:
                continue
            match = pattern.match(raw_path)
            if match:
                request.params = {key: unquote(value) for key, value in match.groupdict().items()}
                with self.lock:
                    return fn(request)
        raise HttpError(404, f"No fake route for {request.method} {request.path}.")
