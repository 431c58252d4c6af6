"""Progressive deploys: a new version takes a share of the traffic, then more in steps on a
schedule, and rolls back by itself when its revision is not healthy.

A progressive deploy is a canary deploy (its first share) with a rollout: its steps (shares in
percent, ascending, ending at 100), how long each lasts, and its guard (see `rollout_guard`): the
most its revision may answer with a 5xx, the slowest its p99 may be, judged over a window once it
holds enough requests. `deployment_finish` starts the rollout; beat's `worker.advance_rollouts`
calls `rollouts_advance` every ROLLOUT_CHECK_SECONDS, which for each rollout under way:

- reads its revision's traffic over the window (`Runtime.traffic`, a step as long as the window);
- rolls back at once when the guard says it is unhealthy: every request goes back to the version
  it shared with (`Runtime.end_canary`), which is live again;
- once its step has lasted long enough and the guard says it is healthy, moves to the next share
  (`Runtime.set_canary_share`); at 100 % it serves alone and the rollout is complete;
- waits, saying so once a step, while the window holds too few requests to judge.

Each check claims the rollout with a conditional update (`rollout_claimed_until`), so two beats or
workers never act on one at once; every runtime call may be repeated, so a check cut short is
simply done again by the next. Every step, and the reason for a rollback, goes in the deployment's
journal and the audit log.

    settings = rollout_settings(steps=[10, 50, 100], max_error_percent=2)
    deployment_request(user=admin, endpoint=endpoint, model_version=version, rollout=settings)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from endpoints.models import Deployment, DeploymentAction, DeploymentStatus, Endpoint, RolloutStatus
from endpoints.services import claims
from endpoints.services.audit import audit_record
from endpoints.services.deployments import deploy_spec_for, resources_of
from endpoints.services.errors import ServiceError
from endpoints.services.rollout_guard import Guard, Verdict, judge
from worker.runtimes import get_runtime
from worker.runtimes.base import DeploySpec, PermanentError, TransientError
from worker.runtimes.traffic import TrafficWindow

log = logging.getLogger(__name__)

MAX_STEPS = 20
LIMITS = {
    "rollout_step_seconds": (10, 7 * 86400),
    "rollout_window_seconds": (60, 86400),
    "rollout_max_p99_ms": (1, 600_000),
    "rollout_min_requests": (1, 10_000_000),
}


@dataclass(frozen=True)
class RolloutSettings:
    """A progressive deploy's settings, checked (see `rollout_settings`)."""

    steps: tuple[int, ...]
    step_seconds: int
    window_seconds: int
    max_error_percent: float
    max_p99_ms: int
    min_requests: int

    def fields(self) -> dict:
        """The Deployment fields that hold them."""
        return {
            "rollout_steps": list(self.steps),
            "rollout_step_seconds": self.step_seconds,
            "rollout_window_seconds": self.window_seconds,
            "rollout_max_error_percent": self.max_error_percent,
            "rollout_max_p99_ms": self.max_p99_ms,
            "rollout_min_requests": self.min_requests,
        }


def default_steps() -> list[int]:
    return [int(part) for part in str(settings.ROLLOUT_STEPS).split(",") if part.strip()]


def rollout_settings(
    *,
    steps=None,
    step_seconds=None,
    window_seconds=None,
    max_error_percent=None,
    max_p99_ms=None,
    min_requests=None,
) -> RolloutSettings:
    """A rollout's settings: each one given, else the ROLLOUT_* setting; ServiceError naming the
    field of the first that is wrong."""
    steps = default_steps() if steps is None else steps
    if isinstance(steps, str):
        try:
            steps = [int(part) for part in steps.replace(" ", "").split(",") if part]
        except ValueError:
            raise ServiceError(
                "Steps are whole percentages separated by commas, e.g. 10,50,100.", field="rollout_steps"
            ) from None
    if isinstance(steps, list | tuple):  # a form's values are text
        steps = [int(step) if isinstance(step, str) and step.strip().isdigit() else step for step in steps]
    if (
        not isinstance(steps, list | tuple)
        or not steps
        or any(isinstance(step, bool) or not isinstance(step, int) for step in steps)
    ):
        raise ServiceError(
            "Steps are a list of whole percentages, e.g. [10, 50, 100].", field="rollout_steps"
        )
    if len(steps) > MAX_STEPS or any(not 1 <= step <= 100 for step in steps):
        raise ServiceError(f"Steps are at most {MAX_STEPS} percentages from 1 to 100.", field="rollout_steps")
    if list(steps) != sorted(set(steps)) or steps[-1] != 100 or steps[0] == 100:
        raise ServiceError(
            "Steps must rise, start below 100 and end at 100, e.g. 10,50,100.", field="rollout_steps"
        )
    values = {
        "rollout_step_seconds": settings.ROLLOUT_STEP_SECONDS if step_seconds is None else step_seconds,
        "rollout_window_seconds": settings.ROLLOUT_WINDOW_SECONDS
        if window_seconds is None
        else window_seconds,
        "rollout_max_p99_ms": settings.ROLLOUT_MAX_P99_MS if max_p99_ms is None else max_p99_ms,
        "rollout_min_requests": settings.ROLLOUT_MIN_REQUESTS if min_requests is None else min_requests,
    }
    for field, value in values.items():
        low, high = LIMITS[field]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ServiceError(f"Give a whole number from {low} to {high}.", field=field)
    if values["rollout_window_seconds"] % 60:
        raise ServiceError(
            "The window is a whole number of minutes (60, 120, ...).", field="rollout_window_seconds"
        )
    error = settings.ROLLOUT_MAX_ERROR_PERCENT if max_error_percent is None else max_error_percent
    if isinstance(error, bool) or not isinstance(error, int | float) or not 0 <= error <= 100:
        raise ServiceError("Give a percentage from 0 to 100.", field="rollout_max_error_percent")
    return RolloutSettings(
        steps=tuple(steps),
        step_seconds=values["rollout_step_seconds"],
        window_seconds=values["rollout_window_seconds"],
        max_error_percent=float(error),
        max_p99_ms=values["rollout_max_p99_ms"],
        min_requests=values["rollout_min_requests"],
    )


#: The request fields of a progressive deploy (API body and dashboard form), by setting.
REQUEST_FIELDS = {
    "rollout_steps": "steps",
    "rollout_step_seconds": "step_seconds",
    "rollout_window_seconds": "window_seconds",
    "rollout_max_error_percent": "max_error_percent",
    "rollout_max_p99_ms": "max_p99_ms",
    "rollout_min_requests": "min_requests",
}


def rollout_from_request(data: dict) -> RolloutSettings | None:
    """The rollout a deploy request asks for (`progressive` and the `rollout_*` fields), None for
    a deploy that is not progressive; the same for the API and the dashboard."""
    given = {field: data[field] for field in REQUEST_FIELDS if data.get(field) not in (None, "", [])}
    if not data.get("progressive"):
        if given:
            raise ServiceError(
                "This setting is for a progressive deploy: ask for one (progressive) or leave it out.",
                field=next(iter(given)),
            )
        return None
    return rollout_settings(**{REQUEST_FIELDS[field]: value for field, value in given.items()})


def guard_of(deployment: Deployment) -> Guard:
    return Guard(
        max_error_percent=deployment.rollout_max_error_percent,
        max_p99_ms=deployment.rollout_max_p99_ms,
        min_requests=deployment.rollout_min_requests,
    )


# --- the journal and the audit log ----------------------------------------------------------------


def _journal(deployment_id: int, name: str, title: str, state: str, message: str) -> None:
    """Add (or replace) the rollout's entry `name` in the deployment's journal."""
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment_id)
        steps = [step for step in deployment.steps if step["step"] != name]
        steps.append(
            {
                "step": name,
                "title": title,
                "state": state,
                "at": timezone.now().isoformat(),
                "message": message,
            }
        )
        Deployment.objects.filter(pk=deployment_id).update(steps=steps)


def rollout_begin(deployment: Deployment, now: datetime) -> None:
    """Start the rollout of a progressive deploy that has just gone live at its first share (in the
    transaction of `deployment_finish`)."""
    percent = deployment.traffic_percent
    Deployment.objects.filter(pk=deployment.pk).update(
        rollout_status=RolloutStatus.ADVANCING,
        rollout_percent=percent,
        rollout_next_at=now + timedelta(seconds=deployment.rollout_step_seconds),
    )
    _journal(
        deployment.pk,
        f"rollout_{percent}",
        f"Rollout: {percent}% of the traffic",
        "done",
        f"The rollout starts at {percent}%; the next step is due in {deployment.rollout_step_seconds} s if "
        f"the guard finds the revision healthy.",
    )
    audit_record(
        actor=None,
        action="deployment.rollout_step",
        target=deployment,
        details={"percent": percent, "steps": deployment.rollout_steps},
    )


# --- beat's check ----------------------------------------------------------------------------------


def rollouts_advance(now: datetime | None = None) -> list[str]:
    """Judge every rollout under way and act on it; returns what was done, one line per rollout."""
    done = []
    for deployment_id in Deployment.objects.filter(rollout_status=RolloutStatus.ADVANCING).values_list(
        "pk", flat=True
    ):
        try:
            outcome = rollout_check(deployment_id=deployment_id, now=now)
        except Exception:  # one broken rollout must not hold the others back
            log.exception("checking the rollout of deployment %s crashed", deployment_id)
            continue
        if outcome:
            done.append(f"{deployment_id}: {outcome}")
    return done


def _claim(deployment_id: int, now: datetime) -> bool:
    free = Q(rollout_claimed_until__isnull=True) | Q(rollout_claimed_until__lt=now)
    return bool(
        Deployment.objects.filter(free, pk=deployment_id, rollout_status=RolloutStatus.ADVANCING).update(
            rollout_claimed_until=claims.claim_until()
        )
    )


def rollout_check(*, deployment_id: int, now: datetime | None = None) -> str:
    """Claim the rollout, judge it, act: "" when nothing changed, else what did."""
    now = now or timezone.now()
    if not _claim(deployment_id, now):
        return ""
    try:
        return _check(deployment_id, now)
    finally:
        Deployment.objects.filter(pk=deployment_id).update(rollout_claimed_until=None)


def _spec(deployment: Deployment) -> DeploySpec:
    """The canary's spec, `previous` holding what the deployment it shares with recorded."""
    shared = deployment.shares_with
    return replace(deploy_spec_for(deployment), previous=resources_of(shared) if shared else {})


def _check(deployment_id: int, now: datetime) -> str:
    deployment = Deployment.objects.select_related(
        "endpoint__live_deployment", "model_version__model", "shares_with"
    ).get(pk=deployment_id)
    endpoint = deployment.endpoint
    stopped_since = endpoint.deployments.filter(
        action=DeploymentAction.STOP, created_at__gt=deployment.finished_at or deployment.created_at
    ).exists()  # a stop and a start since it went live: the start served the new version alone
    if (
        endpoint.live_deployment_id != deployment.pk
        or endpoint.deleted_at
        or endpoint.stopped_at
        or stopped_since
        or deployment.status != DeploymentStatus.READY
    ):
        return _end(deployment, "another deployment, a stop or a delete took the endpoint over")
    if endpoint.deployments.active().exists():
        return ""  # an operation runs on the endpoint: judge once it is done
    runtime = get_runtime()
    window_seconds = deployment.rollout_window_seconds
    revision = deployment.resources.get("revision") or _spec(deployment).revision
    try:
        traffic = runtime.traffic(
            endpoint.name,
            resources_of(deployment),
            start=now - timedelta(seconds=window_seconds),
            end=now,
            step=window_seconds,
        )
    except (TransientError, PermanentError, ValueError) as exc:
        log.warning("no traffic for the rollout of deployment %s: %s", deployment_id, exc)
        _journal(
            deployment_id,
            f"rollout_{deployment.rollout_percent}_wait",
            f"Rollout: waiting at {deployment.rollout_percent}%",
            "waiting",
            f"Its traffic could not be read: {exc}",
        )
        return ""
    verdict = judge(TrafficWindow.of(traffic, revision), guard_of(deployment), window_seconds=window_seconds)
    if verdict.healthy is False:
        return rollout_roll_back(deployment, verdict.reason)
    if deployment.rollout_next_at and now < deployment.rollout_next_at:
        return ""
    if verdict.healthy is None:
        _journal(
            deployment_id,
            f"rollout_{deployment.rollout_percent}_wait",
            f"Rollout: waiting at {deployment.rollout_percent}%",
            "waiting",
            f"Not moving on yet: {verdict.reason}.",
        )
        return ""
    return _advance(deployment, verdict, now)


def _next_share(deployment: Deployment) -> int:
    return next((step for step in deployment.rollout_steps if step > deployment.rollout_percent), 100)


def _advance(deployment: Deployment, verdict: Verdict, now: datetime) -> str:
    percent = _next_share(deployment)
    try:
        done = get_runtime().set_canary_share(_spec(deployment), percent)
    except TransientError as exc:
        log.warning("the rollout of deployment %s could not move to %s%%: %s", deployment.pk, percent, exc)
        return ""
    except PermanentError as exc:
        return rollout_roll_back(deployment, f"it could not move to {percent}%: {exc}")
    with transaction.atomic():
        Endpoint.objects.select_for_update().get(pk=deployment.endpoint_id)
        fields: dict[str, object] = {"rollout_percent": percent, "traffic_percent": percent}
        if percent == 100:
            fields["rollout_status"] = RolloutStatus.COMPLETE
            fields["rollout_next_at"] = None
            deployment.endpoint.deployments.filter(status=DeploymentStatus.READY).exclude(
                pk=deployment.pk
            ).update(status=DeploymentStatus.SUPERSEDED)
        else:
            fields["rollout_next_at"] = now + timedelta(seconds=deployment.rollout_step_seconds)
        Deployment.objects.filter(pk=deployment.pk).update(**fields)
        _journal(
            deployment.pk,
            f"rollout_{percent}",
            f"Rollout: {percent}% of the traffic"
            if percent < 100
            else "Rollout: complete, 100% of the traffic",
            "done",
            f"Healthy at {deployment.rollout_percent}% ({verdict.reason}). {done}",
        )
        audit_record(
            actor=None,
            action="deployment.rollout_complete" if percent == 100 else "deployment.rollout_step",
            target=deployment,
            details={"percent": percent, "from_percent": deployment.rollout_percent, "guard": verdict.reason},
        )
    return f"{deployment.rollout_percent}% -> {percent}%"


def rollout_roll_back(deployment: Deployment, reason: str) -> str:
    """Give every request back to the version the rollout shared with, which is live again."""
    try:
        done = get_runtime().end_canary(_spec(deployment))
    except TransientError as exc:
        log.warning("the rollback of deployment %s waits: %s", deployment.pk, exc)
        _journal(
            deployment.pk,
            "rollout_rollback",
            "Rollout: rolling back",
            "retrying",
            f"{reason}. Retrying: {exc}",
        )
        return ""
    except PermanentError as exc:
        done = f"The runtime refused: {exc}"
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=deployment.endpoint_id)
        Deployment.objects.filter(pk=deployment.pk).update(
            rollout_status=RolloutStatus.ROLLED_BACK,
            rollout_reason=reason[:4000],
            rollout_next_at=None,
            status=DeploymentStatus.ROLLED_BACK,
        )
        shared = deployment.shares_with
        if endpoint.live_deployment_id == deployment.pk and shared is not None:
            endpoint.live_deployment_id = shared.pk
            endpoint.save(update_fields=["live_deployment"])
        _journal(
            deployment.pk,
            "rollout_rollback",
            f"Rollout: rolled back at {deployment.rollout_percent}%",
            "failed",
            f"Rolled back by itself: {reason}. {done}",
        )
        audit_record(
            actor=None,
            action="deployment.rollout_rollback",
            target=deployment,
            details={
                "percent": deployment.rollout_percent,
                "reason": reason[:1000],
                "live_again": shared.pk if shared else None,
            },
        )
    return f"rolled back at {deployment.rollout_percent}%: {reason}"


def _end(deployment: Deployment, why: str) -> str:
    with transaction.atomic():
        Deployment.objects.filter(pk=deployment.pk).update(
            rollout_status=RolloutStatus.ENDED, rollout_next_at=None
        )
        _journal(
            deployment.pk,
            "rollout_ended",
            f"Rollout: ended at {deployment.rollout_percent}%",
            "done",
            f"The rollout stopped: {why}.",
        )
        audit_record(
            actor=None, action="deployment.rollout_ended", target=deployment, details={"reason": why}
        )
    return f"ended: {why}"
