"""Run any journaled operation on an endpoint (a deploy, stop, start or delete) in the worker.

`deployment_run` claims the row with a conditional update (a second delivery finds nothing to
claim), then runs the runtime's steps, skipping those the journal already shows done, so a resumed
operation never repeats work; each step's entry is written as it starts and as it ends.
"""

import logging
import time
from dataclasses import asdict

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from endpoints.models import FINISHED_DEPLOYMENT_STATUSES, Deployment, DeploymentStatus
from endpoints.services import claims, lifecycle
from endpoints.services.audit import audit_record
from endpoints.services.deployments import deploy_spec_for, deployment_finish, resources_of
from worker.runtimes import get_runtime
from worker.runtimes.base import Pending, PermanentError, Step, TransientError
from worker.runtimes.resources import DeploymentResources

log = logging.getLogger(__name__)


def deployment_claim(*, deployment_id: int) -> bool:
    """Take the deployment for this worker until the claim expires; False if someone has it."""
    now = timezone.now()
    claimable = Q(status=DeploymentStatus.QUEUED) | (
        Q(status=DeploymentStatus.RUNNING) & (Q(claimed_until__lt=now) | Q(claimed_until__isnull=True))
    )
    claimed = (
        Deployment.objects.filter(claimable, pk=deployment_id).update(
            status=DeploymentStatus.RUNNING,
            claimed_until=claims.claim_until(),
            attempts=F("attempts") + 1,
        )
        == 1
    )
    if claimed:
        Deployment.objects.filter(pk=deployment_id, started_at__isnull=True).update(started_at=now)
    return claimed


def _journal(deployment_id: int, entry: dict, resources: DeploymentResources | None = None) -> None:
    """Append or replace this step's journal entry; the claim is extended with each write."""
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment_id)
        steps = [step for step in deployment.steps if step["step"] != entry["step"]]
        steps.append(entry)
        deployment.steps = steps
        deployment.claimed_until = claims.claim_until()
        fields = ["steps", "claimed_until"]
        if resources:
            deployment.resources = {**deployment.resources, **resources}
            fields.append("resources")
        deployment.save(update_fields=fields)


def steps_for(deployment: Deployment) -> list[Step]:
    """The runtime's steps for the operation: a deploy's, or a stop's, start's or delete's."""
    if deployment.is_deploy:
        spec = deploy_spec_for(deployment)
        # What this run deploys with: the endpoint's page compares it with the settings saved since.
        Deployment.objects.filter(pk=deployment.pk).update(settings=asdict(spec.resources))
        return get_runtime().deploy_steps(spec)
    return lifecycle.steps_for(deployment)


def deployment_run(*, deployment_id: int) -> str:
    """Claim the operation and run its remaining steps. Returns its final status.

    Raises TransientError when a step should be retried later; the claim is released so the
    retry (or the reconcile task) can pick it up again.
    """
    if not deployment_claim(deployment_id=deployment_id):
        return (
            Deployment.objects.filter(pk=deployment_id).values_list("status", flat=True).first() or "missing"
        )
    deployment = Deployment.objects.select_related("endpoint__live_deployment", "model_version__model").get(
        pk=deployment_id
    )
    done = {step["step"] for step in deployment.steps if step["state"] == "done"}
    resources = resources_of(deployment)
    for step in steps_for(deployment):
        if step.name in done:
            continue
        started = time.monotonic()
        _journal(
            deployment_id,
            {
                "step": step.name,
                "title": step.title,
                "state": "running",
                "at": timezone.now().isoformat(),
                "message": "",
            },
        )
        try:
            with claims.renewed(
                lambda: Deployment.objects.filter(pk=deployment_id, status=DeploymentStatus.RUNNING).update(
                    claimed_until=claims.claim_until()
                ),
                what=f"deployment {deployment_id}",
            ):
                result = step.run(resources)
        except TransientError as exc:
            state = "waiting" if isinstance(exc, Pending) else "retrying"
            _journal(deployment_id, _entry(step, state, started, str(exc)))
            Deployment.objects.filter(pk=deployment_id).update(claimed_until=None)
            raise
        except PermanentError as exc:
            _journal(deployment_id, _entry(step, "failed", started, str(exc)))
            deployment_fail(deployment_id=deployment_id, error=f"{step.title}: {exc}")
            return DeploymentStatus.FAILED
        except Exception as exc:
            log.exception("step %s of deployment %s crashed", step.name, deployment_id)
            _journal(deployment_id, _entry(step, "failed", started, f"Unexpected error: {exc}"))
            deployment_fail(deployment_id=deployment_id, error=f"{step.title}: unexpected error: {exc}")
            return DeploymentStatus.FAILED
        resources.update(result.resources)
        _journal(deployment_id, _entry(step, "done", started, result.message), result.resources)
    if deployment.is_deploy:
        deployment_finish(deployment_id=deployment_id)
        return DeploymentStatus.READY
    lifecycle.finish(deployment_id=deployment_id)
    return DeploymentStatus.DONE


def _entry(step, state: str, started: float, message: str) -> dict:
    return {
        "step": step.name,
        "title": step.title,
        "state": state,
        "at": timezone.now().isoformat(),
        "seconds": round(time.monotonic() - started, 3),
        "message": message,
    }


def deployment_fail(*, deployment_id: int, error: str) -> None:
    """Record a failed operation; a failed deploy leaves whatever was live before serving."""
    with transaction.atomic():
        updated = (
            Deployment.objects.filter(pk=deployment_id)
            .exclude(status__in=set(FINISHED_DEPLOYMENT_STATUSES) - {DeploymentStatus.FAILED})
            .update(
                status=DeploymentStatus.FAILED,
                error=error[:4000],
                finished_at=timezone.now(),
                claimed_until=None,
            )
        )
        if updated:
            deployment = Deployment.objects.get(pk=deployment_id)
            action = "deployment.failed" if deployment.is_deploy else f"endpoint.{deployment.action}_failed"
            audit_record(actor=None, action=action, target=deployment, details={"error": error[:1000]})
