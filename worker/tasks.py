"""Celery tasks: ids in, one service call, nothing else. Our tables hold the state."""

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from endpoints.services import access, deployments, keys
from worker.runtimes.base import Pending, PermanentError, TransientError

RETRY = {"max_retries": 8, "retry_backoff": True, "retry_backoff_max": 120, "retry_jitter": True}


@shared_task(name="worker.deploy", bind=True, acks_late=True, **RETRY)
def deploy(self, deployment_id: int, waits: int = 0) -> str:
    """Run the deployment's remaining steps.

    Waiting on the cloud (`Pending`) is not failing, so it spends no retry: `waits` counts the
    retries spent waiting, and only the others count against `max_retries`. (Celery's own
    counter, `request.retries`, counts both, and `retry(max_retries=None)` means the task's
    default, not unlimited; the runtime bounds a wait itself with an operation deadline.)
    """
    failures = self.request.retries - waits
    # Celery refuses a retry once request.retries passes max_retries; the limit is ours to apply.
    unlimited = {"max_retries": self.request.retries + 1}
    try:
        return deployments.deployment_run(deployment_id=deployment_id)
    except Pending as exc:
        raise self.retry(
            args=[deployment_id],
            kwargs={"waits": waits + 1},
            exc=exc,
            countdown=exc.retry_after or 2,
            **unlimited,
        ) from None
    except TransientError as exc:
        if failures >= self.max_retries:
            deployments.deployment_fail(deployment_id=deployment_id, error=f"Gave up after retries: {exc}")
            return "failed"
        raise self.retry(
            args=[deployment_id],
            kwargs={"waits": waits},
            exc=exc,
            countdown=exc.retry_after or min(2**failures, 120),
            **unlimited,
        ) from None


@shared_task(name="worker.issue_key", bind=True, acks_late=True, **RETRY)
def issue_key(self, request_id: int) -> None:
    try:
        keys.key_request_issue(request_id=request_id)
    except PermanentError as exc:
        keys.key_request_fail(request_id=request_id, error=str(exc))
    except TransientError as exc:
        if self.request.retries >= self.max_retries:
            keys.key_request_fail(request_id=request_id, error=str(exc))
            return
        raise self.retry(exc=exc, countdown=exc.retry_after or min(2**self.request.retries, 120)) from None


@shared_task(name="worker.revoke_key", bind=True, acks_late=True, autoretry_for=(TransientError,), **RETRY)
def revoke_key(self, key_id: int) -> None:
    keys.api_key_revoke_at_runtime(key_id=key_id)


@shared_task(name="worker.restore_key", bind=True, acks_late=True, autoretry_for=(TransientError,), **RETRY)
def restore_key(self, key_id: int) -> None:
    keys.api_key_restore_at_runtime(key_id=key_id)


@shared_task(name="worker.expire_keys", ignore_result=True)
def expire_keys() -> list[int]:
    return keys.api_keys_expire()


@shared_task(name="worker.apply_access", bind=True, acks_late=True, **RETRY)
def apply_access(self, endpoint_id: int) -> None:
    try:
        access.access_apply(endpoint_id=endpoint_id)
    except PermanentError as exc:
        access.access_fail(endpoint_id=endpoint_id, error=str(exc))
    except TransientError as exc:
        if self.request.retries >= self.max_retries:
            access.access_fail(endpoint_id=endpoint_id, error=f"Gave up after retries: {exc}")
            return
        raise self.retry(exc=exc, countdown=exc.retry_after or min(2**self.request.retries, 120)) from None


@shared_task(name="worker.reconcile", ignore_result=True)
def reconcile() -> list[int]:
    return deployments.deployments_reconcile()


@worker_ready.connect
def warm_up_local_runtime(**_kwargs) -> None:
    """Start the local runtime's serving launcher now, so the first deploy finds it warm."""
    if settings.RUNTIME == "local":
        from worker.runtimes.local import LocalRuntime

        LocalRuntime().warm_up()
