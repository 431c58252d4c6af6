"""Celery tasks: an id in, one service call, nothing else. Our tables hold the state.

Every task that calls the runtime shares one policy (`runtime_task`). The work it does is owed
(`endpoints.services.owed`): marked started when it begins, pushed back while it retries, settled
when it is done or its failure recorded; beat's relay sends again whatever is owed and unsettled.
- `Pending` (the cloud is still working) is retried without spending the failure budget; the
  runtime bounds such waits itself;
- `TransientError`, and any error the runtime did not classify (a database restarting, say), is
  retried with exponential backoff (or the `retry_after` the error carries), MAX_FAILURES times;
- past that, or on a `PermanentError`, the failure is recorded on the task's row and in the audit
  log by the service the task names, so it is never lost in a log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from endpoints.services import (
    access,
    deployments,
    fronts,
    keys,
    load_tests,
    operations,
    owed,
    rollouts,
    traffic,
)
from portal import queue
from worker.runtimes import get_runtime
from worker.runtimes.base import Pending, PermanentError, TransientError

log = logging.getLogger(__name__)

MAX_FAILURES = 8
MAX_BACKOFF_SECONDS = 120
PENDING_CHECK_SECONDS = 2


def backoff(failures: int, exc: Exception) -> float:
    """Seconds before the next try after `failures` failures."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        return retry_after
    if isinstance(exc, Pending):
        return PENDING_CHECK_SECONDS
    return min(2**failures, MAX_BACKOFF_SECONDS)


def runtime_task(
    name: str,
    *,
    record_failure: Callable[[int, str], object],
    finished: Callable[[object], bool] = lambda result: True,
):
    """Register `body(object_id)` as the task `name` under the shared policy.

    `record_failure(object_id, error)` writes a final failure on the row and in the audit log;
    `finished(result)` says whether the body's answer settles what is owed (a deployment another
    worker is running is not settled by this one).
    """

    def register(body: Callable[[int], object]):
        def run(self, object_id: int, waits: int = 0):
            # Celery counts every retry in request.retries; waits are not failures.
            failures = self.request.retries - waits
            generation = None
            try:
                generation = owed.started(name, object_id, lease=settings.DEPLOY_CLAIM_SECONDS)
                result = body(object_id)
                if finished(result):
                    owed.settle(name, object_id, generation=generation)
                else:
                    # Another worker holds it: ask again soon, in case that worker is gone.
                    owed.postpone(name, object_id, seconds=0)
                return result
            except PermanentError as exc:
                record_failure(object_id, str(exc))
                owed.settle(name, object_id, generation=generation)
                return "failed"
            except Exception as exc:
                # Anything else (the runtime's TransientError, a database or broker that is
                # restarting, a bug) is retried; past the budget it is recorded as the failure.
                if not isinstance(exc, TransientError):
                    log.exception("task %s for %s failed unexpectedly", name, object_id)
                waiting = isinstance(exc, Pending)
                if not waiting and failures >= self.max_retries:
                    record_failure(object_id, f"Gave up after retries: {exc}")
                    owed.settle(name, object_id, generation=generation)
                    return "failed"
                countdown = backoff(failures, exc)
                _quietly(owed.postpone, name, object_id, seconds=countdown)
                raise self.retry(
                    args=[object_id],
                    kwargs={"waits": waits + waiting},
                    exc=exc,
                    countdown=countdown,
                    max_retries=self.request.retries + 1,  # the limit is ours, applied above
                ) from None

        run.__doc__ = body.__doc__
        run.__name__ = body.__name__
        run.__module__ = body.__module__
        return shared_task(name=name, bind=True, acks_late=True, max_retries=MAX_FAILURES)(run)

    return register


def _quietly(call: Callable, *args, **kwargs) -> None:
    """Bookkeeping that must not hide the error being handled (the database may be the error)."""
    try:
        call(*args, **kwargs)
    except Exception as exc:
        log.warning("%s failed: %s", getattr(call, "__name__", call), exc)


@runtime_task(
    queue.DEPLOY,
    record_failure=lambda pk, error: operations.deployment_fail(deployment_id=pk, error=error),
    finished=lambda status: status not in deployments.UNFINISHED,
)
def deploy(deployment_id: int) -> str:
    """Run the remaining steps of the operation (a deploy, stop, start or delete)."""
    return operations.deployment_run(deployment_id=deployment_id)


@runtime_task(
    queue.ISSUE_KEY, record_failure=lambda pk, error: keys.key_request_fail(request_id=pk, error=error)
)
def issue_key(request_id: int) -> None:
    """Issue the approved request's key at the runtime."""
    keys.key_request_issue(request_id=request_id)


@runtime_task(
    queue.REVOKE_KEY, record_failure=lambda pk, error: keys.api_key_runtime_fail(key_id=pk, error=error)
)
def revoke_key(key_id: int) -> None:
    """Revoke the key at the runtime."""
    keys.api_key_revoke_at_runtime(key_id=key_id)


@runtime_task(
    queue.RESTORE_KEY, record_failure=lambda pk, error: keys.api_key_runtime_fail(key_id=pk, error=error)
)
def restore_key(key_id: int) -> None:
    """Restore the key at the runtime."""
    keys.api_key_restore_at_runtime(key_id=key_id)


@runtime_task(
    queue.APPLY_ACCESS,
    record_failure=lambda pk, error: access.access_fail(endpoint_id=pk, error=error),
    finished=lambda result: result != access.BUSY,
)
def apply_access(endpoint_id: int) -> str:
    """Put the endpoint's current access policy in force at the runtime."""
    return access.access_apply(endpoint_id=endpoint_id)


@runtime_task(
    queue.RUN_LOAD_TEST,
    record_failure=lambda pk, error: load_tests.load_test_fail(test_id=pk, error=error),
    finished=lambda status: status != load_tests.BUSY,
)
def run_load_test(load_test_id: int) -> str:
    """Run the load test (Locust in a child process) and record its figures; revoke its key."""
    return load_tests.load_test_run(test_id=load_test_id)


@shared_task(name=queue.EXPIRE_KEYS, ignore_result=True)
def expire_keys() -> list[int]:
    return keys.api_keys_expire()


@shared_task(name=queue.RELAY, ignore_result=True)
def relay() -> list[str]:
    """Send again the owed tasks that fell due (beat, every TASK_RELAY_SECONDS)."""
    return owed.relay()


@shared_task(name=queue.RECONCILE, ignore_result=True)
def reconcile() -> list[str]:
    """Start again live deployments whose serving stopped (beat, every RECONCILE_INTERVAL_SECONDS)."""
    return deployments.endpoints_revive()


@shared_task(name=queue.REFRESH_FRONTS, ignore_result=True)
def refresh_fronts() -> list[str]:
    """Read the HTTPS fronts' certificates (beat, every HTTPS_FRONT_REFRESH_SECONDS)."""
    return fronts.https_fronts_refresh()


@shared_task(name=queue.SCRAPE_TRAFFIC, ignore_result=True, time_limit=60, soft_time_limit=50)
def scrape_traffic() -> int:
    """Add the serving processes' new requests to the traffic rollups (beat, every TRAFFIC_SCRAPE_SECONDS)."""
    return traffic.traffic_scrape()


@shared_task(name=queue.PRUNE_TRAFFIC, ignore_result=True)
def prune_traffic() -> int:
    """Forget traffic rollups past TRAFFIC_RETENTION_DAYS (beat, hourly)."""
    return traffic.traffic_prune()


@shared_task(name=queue.ADVANCE_ROLLOUTS, ignore_result=True, time_limit=120, soft_time_limit=110)
def advance_rollouts() -> list[str]:
    """Judge every progressive deploy under way: move it on, or roll it back (beat, every
    ROLLOUT_CHECK_SECONDS). Each rollout is claimed, so overlapping runs never act twice."""
    return rollouts.rollouts_advance()


@worker_ready.connect
def warm_up_runtime(**_kwargs) -> None:
    """Let the runtime get ready now (the local one starts its launcher), not at the first deploy."""
    get_runtime().warm_up()
