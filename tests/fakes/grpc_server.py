"""The common machinery of the fake Google APIs: state lock, recording, failure injection, LROs.

A fake is a class whose RPC methods carry `@rpc(service, method, request_cls, response_cls)`.
`GrpcFake.start()` serves them on a loopback port with `grpc.method_handlers_generic_handler`,
(de)serialising with the proto-plus classes the client wheels ship (or raw protobuf classes for
IAM and long-running operations), and serves `google.longrunning.Operations` beside them, because
the clients poll operations over the same channel.

    fake = CloudRunFake().start()
    fake.fail_next(2, grpc.StatusCode.UNAVAILABLE)      # the next two calls answer 503
    fake.fail_next(1, grpc.StatusCode.UNKNOWN, method="CreateApiConfig", after=True)  # do it, then fail
    fake.operation_polls = 3                            # operations report done on the 3rd poll
    ...
    assert fake.methods() == ["UpdateService", "GetOperation"]
    fake.stop()

Every fake records each call as a `Call(method, request)` (the request decoded as the client sent
it), so tests assert the exact requests.
"""

from __future__ import annotations

import itertools
import threading
import traceback
import uuid
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import proto
from google.longrunning import operations_pb2
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

#: The longest a call waits at a closed gate before it is answered anyway.
GATE_WAIT_SECONDS = 120


class FakeError(Exception):
    """Raised by a fake RPC method: answer with this status, like Google would."""

    def __init__(self, code: grpc.StatusCode, message: str, *, details: tuple = ()):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def quota_error(limit: str, *, metric: str = "apikeys.googleapis.com/write_requests") -> FakeError:
    """A RESOURCE_EXHAUSTED answer carrying Google's ErrorInfo, e.g. limit "WritesPerMinutePerProject"."""
    info = error_details_pb2.ErrorInfo(
        reason="RATE_LIMIT_EXCEEDED",
        domain="googleapis.com",
        metadata={"quota_metric": metric, "quota_limit": limit, "consumer": "projects/123456789012"},
    )
    return FakeError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"Quota exceeded for quota metric '{metric}' and limit '{limit}'.",
        details=(info,),
    )


def service_disabled(service: str, title: str = "", project_number: str = "123456789012") -> FakeError:
    """PERMISSION_DENIED as Google answers a call to an API the project has not enabled."""
    info = error_details_pb2.ErrorInfo(
        reason="SERVICE_DISABLED",
        domain="googleapis.com",
        metadata={"service": service, "consumer": f"projects/{project_number}"},
    )
    message = disabled_message(service, title, project_number)
    return FakeError(grpc.StatusCode.PERMISSION_DENIED, message, details=(info,))


def disabled_message(service: str, title: str, project_number: str) -> str:
    from tests.fakes.project import TITLES

    title = title or TITLES[service]
    page = f"https://console.developers.google.com/apis/api/{service}/overview?project={project_number}"
    return (
        f"{title} has not been used in project {project_number} before or it is disabled. Enable it by "
        f"visiting {page} then retry. If you enabled this API recently, wait a few minutes for the "
        "action to propagate to our systems and retry."
    )


@dataclass
class Call:
    method: str
    request: Any


@dataclass
class _Failure:
    remaining: int
    error: FakeError
    method: str | None
    after: bool


@dataclass
class _PendingOperation:
    operation: operations_pb2.Operation
    polls_left: int
    finish: Callable[[], None] | None = None
    done_at: float = 0.0  # not done before the project's clock reads this


def rpc(service: str, method: str, request_cls, response_cls):
    """Mark a fake's method as the handler of `/<service>/<method>`."""

    def mark(fn):
        fn._rpc = (service, method, request_cls, response_cls)
        return fn

    return mark


def _codec(cls) -> tuple[Callable, Callable]:
    if isinstance(cls, proto.message.MessageMeta):
        return cls.deserialize, cls.serialize
    return cls.FromString, lambda message: message.SerializeToString()


def pack(message) -> any_pb2.Any:
    """Pack a proto-plus or raw protobuf message into an Any."""
    packed = any_pb2.Any()
    packed.Pack(
        type(message).pb(message) if isinstance(type(message), proto.message.MessageMeta) else message
    )
    return packed


class GrpcFake:
    """Base of every gRPC fake: serve the marked methods, keep state under one lock."""

    #: prefix of operation names; API Keys and Service Usage use top-level names.
    operation_prefix = "operations"
    #: the API this fake is, as Service Usage names it: refused while the project has it disabled.
    api = ""

    def __init__(self):
        from tests.fakes.project import FakeProject

        self.project = FakeProject()  # start_fakes gives every fake the same one
        self.lock = threading.RLock()
        self.calls: list[Call] = []
        self.operation_polls = 0
        self._failures: list[_Failure] = []
        self._hooks: dict[str, Callable] = {}
        self._operations: dict[str, _PendingOperation] = {}
        self._server: grpc.Server | None = None
        self.port: int | None = None
        self.gate = threading.Event()  # cleared: every call waits (see Fakes.pause)
        self.gate.set()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> GrpcFake:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        services: dict[str, dict] = {}
        for name in dir(type(self)):
            fn = getattr(type(self), name)
            spec = getattr(fn, "_rpc", None)
            if spec is None:
                continue
            service, method, request_cls, response_cls = spec
            deserialize, _ = _codec(request_cls)
            _, serialize = _codec(response_cls)
            services.setdefault(service, {})[method] = grpc.unary_unary_rpc_method_handler(
                self._handler(method, getattr(self, name)),
                request_deserializer=deserialize,
                response_serializer=serialize,
            )
        services["google.longrunning.Operations"] = {
            "GetOperation": grpc.unary_unary_rpc_method_handler(
                self._handler("GetOperation", self._get_operation),
                request_deserializer=operations_pb2.GetOperationRequest.FromString,
                response_serializer=lambda message: message.SerializeToString(),
            )
        }
        for service, handlers in services.items():
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    @property
    def endpoint(self) -> str:
        """The value for GCP_API_ENDPOINT_OVERRIDES that points a client at this fake."""
        return f"insecure://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget all state (between tests; the server keeps running)."""
        with self.lock:
            self.calls.clear()
            self._failures.clear()
            self._hooks.clear()
            self._operations.clear()
            self.operation_polls = 0
            self.gate.set()
            self.reset_state()

    def reset_state(self) -> None:
        """Subclasses clear their resources here."""

    # --- test controls -----------------------------------------------------------------------

    def fail_next(
        self,
        times: int = 1,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        message: str = "The service is currently unavailable.",
        *,
        method: str | None = None,
        after: bool = False,
        error: FakeError | None = None,
    ) -> None:
        """Answer the next `times` calls (to `method`, or any) with an error.

        With `after=True` the call takes effect first and only its answer is lost, as when a
        response times out on the way back.
        """
        with self.lock:
            self._failures.append(_Failure(times, error or FakeError(code, message), method, after))

    def after(self, method: str, hook: Callable) -> None:
        """Run `hook(request, response)` after each answered call to `method` (e.g. a racing writer)."""
        with self.lock:
            self._hooks[method] = hook

    def methods(self) -> list[str]:
        with self.lock:
            return [call.method for call in self.calls]

    def requests(self, method: str) -> list:
        with self.lock:
            return [call.request for call in self.calls if call.method == method]

    def clear_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    # --- operations --------------------------------------------------------------------------

    def operation(
        self,
        *,
        response=None,
        metadata=None,
        error: FakeError | None = None,
        finish: Callable[[], None] | None = None,
        prefix: str | None = None,
        takes: float = 0.0,
    ) -> operations_pb2.Operation:
        """Start a long-running operation; it is done at once unless `operation_polls` says otherwise,
        or the work `takes` that many seconds of the project's clock.

        `finish` runs when the operation completes (at once, or on the poll that reports done).
        """
        op = operations_pb2.Operation(name=f"{prefix or self.operation_prefix}/{uuid.uuid4()}")
        if metadata is not None:
            op.metadata.CopyFrom(pack(metadata))
        if error is not None:
            op.error.CopyFrom(status_pb2.Status(code=error.code.value[0], message=error.message))
        elif response is not None:
            op.response.CopyFrom(pack(response))
        else:
            op.response.CopyFrom(pack(_empty()))
        pending = _PendingOperation(
            operation=op, polls_left=self.operation_polls, finish=finish, done_at=self.project.now() + takes
        )
        with self.lock:
            self._operations[op.name] = pending
        if self._due(pending):
            self._complete(pending)
        return self._view(pending)

    def _due(self, pending: _PendingOperation) -> bool:
        return pending.polls_left <= 0 and self.project.now() >= pending.done_at

    def _complete(self, pending: _PendingOperation) -> None:
        if pending.finish is not None:
            pending.finish()
            pending.finish = None
        pending.operation.done = True

    def _view(self, pending: _PendingOperation) -> operations_pb2.Operation:
        view = operations_pb2.Operation()
        view.CopyFrom(pending.operation)
        if not view.done:
            view.ClearField("result")
        return view

    def _get_operation(self, request, context):
        with self.lock:
            pending = self._operations.get(request.name)
            if pending is None:
                raise FakeError(grpc.StatusCode.NOT_FOUND, f"Operation {request.name} not found.")
            if not pending.operation.done:
                pending.polls_left -= 1
                if self._due(pending):
                    self._complete(pending)
            return self._view(pending)

    def finish_operations(self) -> None:
        """Complete every pending operation now."""
        with self.lock:
            for pending in self._operations.values():
                if not pending.operation.done:
                    self._complete(pending)

    # --- dispatch ----------------------------------------------------------------------------

    def _handler(self, method: str, fn):
        def handle(request, context):
            self.gate.wait(GATE_WAIT_SECONDS)
            with self.lock:
                self.calls.append(Call(method, request))
                failure = self._take_failure(method)
            try:
                if self.api and self.project.is_disabled(self.api):
                    raise service_disabled(self.api)
                if failure is not None and not failure.after:
                    raise failure.error
                with self.lock:
                    response = fn(request, context)
                    if method in self._hooks:
                        self._hooks[method](request, response)
                if failure is not None:
                    raise failure.error
                return response
            except FakeError as exc:
                _abort(context, exc)
            except Exception as exc:  # a bug in the fake: make it loud in the test output
                traceback.print_exc()
                context.abort(grpc.StatusCode.INTERNAL, f"fake crashed: {exc!r}")

        return handle

    def _take_failure(self, method: str) -> _Failure | None:
        for failure in self._failures:
            if failure.remaining > 0 and failure.method in (None, method):
                failure.remaining -= 1
                if failure.remaining == 0:
                    self._failures.remove(failure)
                return failure
        return None


def _abort(context, exc: FakeError):
    if exc.details:
        status = status_pb2.Status(
            code=exc.code.value[0], message=exc.message, details=[pack(detail) for detail in exc.details]
        )
        context.abort_with_status(rpc_status.to_status(status))
    context.abort(exc.code, exc.message)


def _empty():
    from google.protobuf import empty_pb2

    return empty_pb2.Empty()


_counter = itertools.count(1)


def next_number() -> int:
    """A process-wide increasing number, for etags and generated names."""
    return next(_counter)


def not_found(what: str) -> FakeError:
    return FakeError(grpc.StatusCode.NOT_FOUND, f"{what} not found.")


def invalid(message: str) -> FakeError:
    return FakeError(grpc.StatusCode.INVALID_ARGUMENT, message)


def already_exists(message: str) -> FakeError:
    return FakeError(grpc.StatusCode.ALREADY_EXISTS, message)


__all__ = [
    "Call",
    "FakeError",
    "GrpcFake",
    "already_exists",
    "code_pb2",
    "field",
    "invalid",
    "next_number",
    "not_found",
    "pack",
    "quota_error",
    "rpc",
]
