"""An endpoint's life after its first deploy: stop it, start it again, delete it.

Each is a journaled operation like a deploy (a `Deployment` row whose `action` says which), owed
and run by the same task (`endpoints.services.operations`), with the same progress page, audit
and plan mode; one operation runs at a time per endpoint.
- stop: the live version stops serving; the endpoint keeps its URL, keys, policy and records;
- start: the stopped live version serves again;
- delete: everything the runtime made for the endpoint goes (what is already gone counts as
  removed); the records stay, its keys are revoked, its open key requests refused, and its name
  is free for a new endpoint.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from endpoints.models import (
    ApiKey,
    ApiKeyRequest,
    Deployment,
    DeploymentAction,
    DeploymentStatus,
    Endpoint,
    KeyRequestStatus,
    ModelVersion,
    OwedTask,
)
from endpoints.services.audit import audit_record
from endpoints.services.deployments import live_spec_for, operation_open, teardown_spec_for
from endpoints.services.errors import ServiceError, Unprocessable, require_admin
from portal import queue
from worker.runtimes import get_runtime
from worker.runtimes.base import Change, PermanentError, Step, TransientError, plan_of

DELETED_NOTE = "The endpoint was deleted."


def _live_version(endpoint: Endpoint) -> ModelVersion | None:
    live = endpoint.live_deployment
    return live.model_version if live else None


def _check_stop(endpoint: Endpoint) -> ModelVersion | None:
    if endpoint.live_deployment_id is None:
        raise ServiceError(f"Nothing is live on {endpoint.name}: there is nothing to stop.", code="conflict")
    if endpoint.stopped_at:
        raise ServiceError(f"{endpoint.name} is already stopped.", code="conflict")
    return _live_version(endpoint)


def _check_start(endpoint: Endpoint) -> ModelVersion | None:
    if endpoint.live_deployment_id is None:
        raise ServiceError(f"Nothing is live on {endpoint.name}: deploy a version instead.", code="conflict")
    if not endpoint.stopped_at:
        raise ServiceError(f"{endpoint.name} is not stopped.", code="conflict")
    return _live_version(endpoint)


CHECKS: dict[str, Callable[[Endpoint], ModelVersion | None]] = {
    DeploymentAction.STOP: _check_stop,
    DeploymentAction.START: _check_start,
    DeploymentAction.DELETE: _live_version,
}


def endpoint_stop(*, user, endpoint: Endpoint) -> Deployment:
    """Stop serving the endpoint's live version (the worker carries it out); start brings it back."""
    return _open(user=user, endpoint=endpoint, action=DeploymentAction.STOP)


def endpoint_start(*, user, endpoint: Endpoint) -> Deployment:
    """Serve the stopped endpoint's live version again, on the same URL."""
    return _open(user=user, endpoint=endpoint, action=DeploymentAction.START)


def endpoint_delete(*, user, endpoint: Endpoint, confirm: str) -> Deployment:
    """Remove everything the runtime made for the endpoint; `confirm` must be the endpoint's name."""
    require_admin(user)
    if confirm != endpoint.name:
        raise Unprocessable(f"Type the endpoint's name, {endpoint.name}, to confirm.", field="confirm")
    return _open(user=user, endpoint=endpoint, action=DeploymentAction.DELETE)


def _open(*, user, endpoint: Endpoint, action: str) -> Deployment:
    require_admin(user)
    return operation_open(
        user=user,
        endpoint=endpoint,
        action=action,
        check=CHECKS[action],
        audit_action=f"endpoint.{action}",
        details={},
    )


def lifecycle_plan(*, user, endpoint: Endpoint, action: str) -> list[Change]:
    """Say what stopping, starting or deleting `endpoint` would change, changing nothing."""
    require_admin(user)
    endpoint = Endpoint.objects.with_live().get(pk=endpoint.pk)
    if action not in CHECKS:
        raise ServiceError(f"Unknown operation {action!r}: use stop, start or delete.", field="action")
    CHECKS[action](endpoint)
    try:
        return plan_of(_steps(endpoint, action))
    except PermanentError as exc:
        raise ServiceError(f"The runtime could not plan the {action}: {exc}") from None
    except TransientError as exc:
        raise ServiceError(f"The runtime could not plan the {action}: {exc}", code="unavailable") from None


def steps_for(deployment: Deployment) -> list[Step]:
    """The runtime's steps for a stop, start or delete operation."""
    return _steps(deployment.endpoint, deployment.action)


def _steps(endpoint: Endpoint, action: str) -> list[Step]:
    runtime = get_runtime()
    if action == DeploymentAction.DELETE:
        return runtime.delete_steps(teardown_spec_for(endpoint))
    spec = live_spec_for(endpoint)
    return runtime.stop_steps(spec) if action == DeploymentAction.STOP else runtime.start_steps(spec)


def finish(*, deployment_id: int) -> None:
    """Record a finished stop, start or delete on the endpoint and in the audit log."""
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment_id)
        endpoint = Endpoint.objects.select_for_update().get(pk=deployment.endpoint_id)
        now = timezone.now()
        Deployment.objects.filter(pk=deployment_id).update(
            status=DeploymentStatus.DONE, finished_at=now, claimed_until=None, error=""
        )
        if deployment.action == DeploymentAction.STOP:
            endpoint.stopped_at = now
            endpoint.save(update_fields=["stopped_at"])
        elif deployment.action == DeploymentAction.START:
            endpoint.stopped_at = None
            endpoint.save(update_fields=["stopped_at"])
        else:
            _forget(endpoint, now)
        audit_record(
            actor=None,
            action=f"endpoint.{deployment.action}_done",
            target=deployment,
            details={"endpoint": endpoint.name, "seconds": (now - deployment.created_at).total_seconds()},
        )


def _forget(endpoint: Endpoint, now) -> None:
    """The runtime holds nothing of `endpoint` any more: nothing is live, its keys are revoked,
    its open requests refused, and no task is owed for them."""
    endpoint.deployments.filter(status=DeploymentStatus.READY).update(status=DeploymentStatus.SUPERSEDED)
    endpoint.deleted_at = now
    endpoint.live_deployment = None
    endpoint.url = endpoint.gateway_url = ""
    endpoint.stopped_at = None
    endpoint.save(update_fields=["deleted_at", "live_deployment", "url", "gateway_url", "stopped_at"])
    keys = ApiKey.objects.filter(endpoint=endpoint)
    keys.filter(revoked_at__isnull=True).update(revoked_at=now, revoke_after=None)
    requests = ApiKeyRequest.objects.filter(endpoint=endpoint)
    requests.exclude(sealed_secret="").update(sealed_secret="")
    requests.filter(status__in=[KeyRequestStatus.PENDING, KeyRequestStatus.APPROVED]).update(
        status=KeyRequestStatus.REJECTED, decided_at=now, decision_note=DELETED_NOTE
    )
    key_ids = list(keys.values_list("pk", flat=True))
    OwedTask.objects.filter(task=queue.APPLY_ACCESS, object_id=endpoint.pk).delete()
    OwedTask.objects.filter(
        task=queue.ISSUE_KEY, object_id__in=requests.values_list("pk", flat=True)
    ).delete()
    OwedTask.objects.filter(task__in=[queue.REVOKE_KEY, queue.RESTORE_KEY], object_id__in=key_ids).delete()
