"""Compute Engine writes: `*_unary` calls and their operations, waited on our own terms.

The extended-operation objects of `compute_v1` poll a client that ignores our endpoint options
(they would go to Google's host even in tests) and do not raise when the operation failed; so every
write here uses a `*_unary` method and is followed, when the operation is not DONE yet, by `get` on
a Global/RegionOperationsClient built with the same options (`get`, not `wait`: `wait` blocks for
up to two minutes inside one call). A DONE operation is checked for `error`.
"""

from __future__ import annotations

import uuid
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from worker.runtimes.base import PermanentError, TransientError
from worker.runtimes.gcp.clients import Context
from worker.runtimes.gcp.operations import wait_until

DONE = compute_v1.Operation.Status.DONE
TRANSIENT_CODES = {"RESOURCE_NOT_READY", "INTERNAL_ERROR", "SERVICE_UNAVAILABLE", "RATE_LIMIT_EXCEEDED"}


def request_id() -> str:
    """A fresh id per logical write: Compute returns the first operation if the same id comes again."""
    return str(uuid.uuid4())


def wait(ctx: Context, operation: compute_v1.Operation, *, what: str, region: str | None = None) -> None:
    """Wait (bounded) for a Compute operation; raise with Google's message if it ended in error."""
    scope: dict[str, Any]  # the get request's project (and region), beside `call`'s own keywords
    if region:
        client = ctx.clients.compute("RegionOperationsClient")
        scope = {"project": ctx.cfg.project, "region": region}
    else:
        client = ctx.clients.compute("GlobalOperationsClient")
        scope = {"project": ctx.cfg.project}
    current = operation
    if current.status != DONE:

        def read():
            nonlocal current
            current = ctx.call(client.get, operation=operation.name, what=f"{what} (poll)", **scope)
            return current if current.status == DONE else None

        wait_until(ctx, read, what=what, started=ctx.wall())
    errors = list(current.error.errors)
    if errors or current.http_error_status_code >= 400:
        codes = {error.code for error in errors}
        message = (
            "; ".join(f"{error.code}: {error.message}" for error in errors) or current.http_error_message
        )
        failure = TransientError if codes and codes <= TRANSIENT_CODES else PermanentError
        raise failure(f"{what}: {message}")


def insert(ctx: Context, method, request: dict, *, what: str, region: str | None = None) -> bool:
    """Create a resource with `method` (an `insert_unary`) unless it exists; True if it was made.

    `region` names the region whose operations to poll (regional resources only)."""
    return _write(ctx, method, request, what=what, region=region, done=(gexc.Conflict,))  # 409: it exists


def delete(ctx: Context, method, request: dict, *, what: str, region: str | None = None) -> bool:
    """Delete a resource with `method` (a `delete_unary`) unless it is gone; True if it was there.

    Compute refuses (400 resourceInUseByAnotherResource) while another resource refers to it."""
    return _write(ctx, method, request, what=what, region=region, done=(gexc.NotFound,))


def update(ctx: Context, method, request: dict, *, what: str, region: str | None = None) -> None:
    """Change a resource with `method` (a `set*_unary` or `patch_unary`) and wait for it."""
    _write(ctx, method, request, what=what, region=region, done=())


def _write(ctx: Context, method, request: dict, *, what: str, region: str | None, done: tuple) -> bool:
    """Send one write and wait for its operation; False when Google answered one of `done` (the
    errors that mean there is nothing to do)."""
    operation = ctx.call(method, request={**request, "request_id": request_id()}, what=what, accept=done)
    if operation is None:
        return False
    wait(ctx, operation, what=what, region=region)
    return True
