"""Waiting on Google's long-running operations without holding a worker for minutes.

A step that starts an operation records its name; the step after it polls that name here for at
most GCP_OPERATION_WAIT_SECONDS, then gives the worker back with a TransientError, and the task is
retried later and polls again (one GetOperation per try). An operation older than
GCP_OPERATION_DEADLINE_SECONDS fails the step; an operation that ended in error fails it with
Google's message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.longrunning import operations_pb2

from worker.runtimes.base import Pending, PermanentError
from worker.runtimes.gcp.clients import Context


class StillRunning(Pending):
    """The operation is not done yet: try the step again later."""


def operation_result(
    ctx: Context,
    client,
    name: str,
    *,
    what: str,
    started: float,
    result_cls=None,
    describe: Callable[[operations_pb2.Operation], str] | None = None,
):
    """Poll the operation `name` (started at wall time `started`) and return its unpacked response.

    `client` is any gapic client with `get_operation` (Cloud Run, API Gateway, API Keys, Service
    Usage); `result_cls` is the proto-plus class of the response, or None to ignore it;
    `describe(operation)` adds detail to a failure (API Gateway's diagnostics).
    """

    def read():
        operation = ctx.call(_getter(client), name, what=f"{what} (poll)")
        if not operation.done:
            return None
        if operation.HasField("error"):
            detail = describe(operation) if describe else ""
            raise PermanentError(f"{what}: {operation.error.message}{detail}")
        return result_cls.deserialize(operation.response.value) if result_cls is not None else True

    return wait_until(ctx, read, what=what, started=started, label=name)


def _getter(client) -> Callable:
    """GetOperation for `client`: its own method where it has one (Cloud Run, Service Usage), else
    the transport's operations client (API Gateway, API Keys), on the same channel either way."""
    if hasattr(client, "get_operation"):
        return lambda name, **kwargs: client.get_operation(request={"name": name}, **kwargs)
    return client.transport.operations_client.get_operation


def wait_until(ctx: Context, read: Callable[[], Any], *, what: str, started: float, label: str = ""):
    """Call `read()` every poll interval until it returns something other than None.

    Polls for at most GCP_OPERATION_WAIT_SECONDS in this worker, then raises StillRunning (the
    task retries later); fails once GCP_OPERATION_DEADLINE_SECONDS have passed since `started`.
    """
    give_back_at = ctx.clock() + ctx.cfg.wait_seconds
    while True:
        found = read()
        if found is not None:
            return found
        waited = ctx.wall() - started
        where = f" ({label})" if label else ""
        if waited > ctx.cfg.operation_deadline:
            raise PermanentError(f"{what}: still not done after {waited:.0f} s{where}.")
        if ctx.clock() + ctx.cfg.poll_interval > give_back_at:
            raise StillRunning(f"{what}: still in progress{where}.", retry_after=ctx.cfg.poll_interval)
        ctx.sleep(ctx.cfg.poll_interval)
