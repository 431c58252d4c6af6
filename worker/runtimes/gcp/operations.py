"""Waiting on Google's long-running operations without holding a worker for minutes.

A step that starts an operation records its name; the step after it polls that name here for at
most GCP_OPERATION_WAIT_SECONDS, then gives the worker back with a TransientError, and the task is
retried later and polls again (one GetOperation per try). An operation older than
GCP_OPERATION_DEADLINE_SECONDS fails the step; an operation that ended in error fails it with
Google's message.
"""

from __future__ import annotations

from worker.runtimes.base import PermanentError, TransientError
from worker.runtimes.gcp.clients import Context


class StillRunning(TransientError):
    """The operation is not done yet: try the step again later."""


def operation_result(ctx: Context, client, name: str, *, what: str, started: float, result_cls=None):
    """Poll the operation `name` (started at wall time `started`) and return its unpacked response.

    `client` is any gapic client with `get_operation` (Cloud Run, API Gateway, API Keys, Service
    Usage); `result_cls` is the proto-plus class of the response, or None to ignore it.
    """
    give_back_at = ctx.clock() + ctx.cfg.wait_seconds
    while True:
        operation = ctx.call(client.get_operation, request={"name": name}, what=f"{what} (poll)")
        if operation.done:
            if operation.HasField("error"):
                raise PermanentError(f"{what}: {operation.error.message}")
            if result_cls is None:
                return None
            return result_cls.deserialize(operation.response.value)
        waited = ctx.wall() - started
        if waited > ctx.cfg.operation_deadline:
            raise PermanentError(f"{what}: still not done after {waited:.0f} s ({name}).")
        if ctx.clock() + ctx.cfg.poll_interval > give_back_at:
            raise StillRunning(f"{what}: still in progress ({name}).", retry_after=ctx.cfg.poll_interval)
        ctx.sleep(ctx.cfg.poll_interval)
