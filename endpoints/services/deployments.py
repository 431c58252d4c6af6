"""Deployments: request one, say what it would change, describe it to the runtime, finish it.

The database is the truth and the queue carries only ids. `deployment_request` writes the row
and owes `worker.deploy` (sent on commit); the task runs it as any journaled operation
(`endpoints.services.operations`), and `deployment_finish` makes it live.
"""

import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import cast

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from endpoints.models import (
    Deployment,
    DeploymentAction,
    DeploymentStatus,
    Endpoint,
    ModelVersion,
)
from endpoints.services.access import access_policy_for, access_sync_enqueue
from endpoints.services.audit import audit_record
from endpoints.services.endpoints import check_min_instances
from endpoints.services.errors import ServiceError, Unprocessable, require_admin
from endpoints.services.owed import owe
from portal import queue
from worker.runtimes import get_runtime
from worker.runtimes.base import (
    Change,
    DeploySpec,
    ModelSpec,
    PermanentError,
    Resources,
    TeardownSpec,
    TransientError,
)
from worker.runtimes.resources import DeploymentResources

log = logging.getLogger(__name__)


#: What deployment_run answers while a deployment is not finished (another worker has it).
UNFINISHED = (DeploymentStatus.QUEUED, DeploymentStatus.RUNNING)

FULL_TRAFFIC = 100  # a deployment's share when none is given: the new version takes every request
TRAFFIC_RANGE = "Traffic must be a whole percentage from 1 to 100."


def traffic_share(traffic_percent: int | None) -> int:
    """The share asked for, FULL_TRAFFIC when none; a whole percentage from 1 to 100."""
    if traffic_percent is None:
        return FULL_TRAFFIC
    if (
        isinstance(traffic_percent, bool)
        or not isinstance(traffic_percent, int)
        or not 1 <= traffic_percent <= 100
    ):
        raise ServiceError(TRAFFIC_RANGE, field="traffic_percent")
    return traffic_percent


def check_canary(traffic_percent: int, endpoint: Endpoint) -> None:
    """A share below FULL_TRAFFIC splits requests with the live version: the runtime must be able
    to split them, and a version must be live."""
    if traffic_percent == FULL_TRAFFIC:
        return
    runtime = get_runtime()
    if not runtime.supports_canary:
        raise Unprocessable(
            f"The {runtime.name} runtime serves one version at a time: deploy with 100% of the traffic.",
            field="traffic_percent",
        )
    if endpoint.live_deployment_id is None:
        raise ServiceError(
            "A canary share needs a version already live on the endpoint; deploy with 100% first.",
            field="traffic_percent",
            code="conflict",
        )


def _busy_message(endpoint: Endpoint) -> str:
    active = endpoint.deployments.active().first()
    what = "deployment" if active is None or active.is_deploy else active.action
    which = f" ({what} {active.pk}, {active.status})" if active else ""
    return f"Endpoint {endpoint.name!r} already has a {what} in progress{which}; wait for it to finish."


def operation_open(
    *,
    user,
    endpoint: Endpoint,
    action: str,
    check: Callable[[Endpoint], ModelVersion | None],
    audit_action: str,
    details: dict,
    **fields,
) -> Deployment:
    """Record an operation on `endpoint` and owe its task, under the endpoint's row lock.

    `check(locked_endpoint)` refuses what cannot be done (ServiceError) and returns the version the
    operation concerns. One operation runs at a time per endpoint; a second is a conflict.
    """
    task_id = str(uuid.uuid4())
    try:
        with transaction.atomic():
            locked = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
            if locked.deleted_at:
                raise ServiceError(f"Endpoint {locked.name!r} was deleted.", code="not_found")
            if locked.deployments.active().exists():
                raise ServiceError(_busy_message(locked), code="conflict")
            model_version = check(locked)
            deployment = Deployment.objects.create(
                endpoint=locked,
                action=action,
                model_version=model_version,
                requested_by=user,
                task_id=task_id,
                **fields,
            )
            audit_record(
                actor=user,
                action=audit_action,
                target=deployment,
                details={"endpoint": locked.name, **details},
            )
            owe(queue.DEPLOY, deployment.pk, task_id=task_id)
    except IntegrityError:
        raise ServiceError(_busy_message(endpoint), code="conflict") from None
    return deployment


def deployment_request(
    *,
    user,
    endpoint: Endpoint,
    model_version: ModelVersion,
    traffic_percent: int | None = None,
    rollback_of: Deployment | None = None,
    rollout=None,
) -> Deployment:
    """Queue a deployment of `model_version` to `endpoint`; the worker carries it out.

    `traffic_percent` is the new version's share (FULL_TRAFFIC when not given; less is a canary).
    `rollout` (a `rollouts.RolloutSettings`) makes it progressive: it starts at the first step's
    share and beat moves it on (see `endpoints.services.rollouts`).
    """
    require_admin(user)
    share = traffic_share(traffic_percent)
    progressive: dict = {}
    if rollout is not None:
        # 100, the share when none is given (and the form's default), means "left out" here.
        if traffic_percent not in (None, FULL_TRAFFIC, rollout.steps[0]):
            raise ServiceError(
                f"A progressive deploy starts at its first step ({rollout.steps[0]}%): leave the share out "
                "or make it the first step.",
                field="traffic_percent",
            )
        share = rollout.steps[0]
        progressive = {**rollout.fields(), "rollout_status": "pending"}
    if share < FULL_TRAFFIC:
        # The version it shares the traffic with: live now, and, one operation at a time, still
        # live when this deploy runs (check_canary refuses a share with none). Reconcile starts it
        # again first should it stop.
        progressive["shares_with_id"] = (
            Endpoint.objects.filter(pk=endpoint.pk).values_list("live_deployment_id", flat=True).first()
        )

    def check(locked: Endpoint) -> ModelVersion:
        check_canary(share, locked)
        check_min_instances(locked)
        return model_version

    return operation_open(
        user=user,
        endpoint=endpoint,
        action=DeploymentAction.DEPLOY,
        check=check,
        audit_action="deployment.rollback" if rollback_of else "deployment.request",
        details={
            "model_version": str(model_version),
            "traffic_percent": share,
            **({"rollback_of": rollback_of.pk} if rollback_of else {}),
            **({"rollout_steps": list(rollout.steps)} if rollout else {}),
        },
        traffic_percent=share,
        rollback_of=rollback_of,
        **progressive,
    )


def deployment_rollback(*, user, deployment: Deployment) -> Deployment:
    """Deploy again the version an earlier deployment put live."""
    require_admin(user)
    endpoint = deployment.endpoint
    if refusal := deployment.roll_back_refusal:
        raise ServiceError(refusal, code="conflict")
    assert deployment.model_version is not None  # a deploy, as roll_back_refusal made sure
    return deployment_request(
        user=user,
        endpoint=endpoint,
        model_version=deployment.model_version,
        rollback_of=deployment,
    )


def deployment_plan(
    *, user, endpoint: Endpoint, model_version: ModelVersion, traffic_percent: int | None = None
) -> list[Change]:
    """Say what deploying `model_version` to `endpoint` would change, changing nothing.

    No row is written and no task enqueued; the runtime answers from reads (and, on Cloud Run,
    a validate-only request). The revision is named after the id the next deployment would
    most likely get, so the names in the plan are provisional.
    """
    require_admin(user)
    traffic_percent = traffic_share(traffic_percent)
    endpoint = Endpoint.objects.with_live().get(pk=endpoint.pk)
    check_canary(traffic_percent, endpoint)
    check_min_instances(endpoint)
    runtime = get_runtime()
    next_id = (Deployment.objects.aggregate(last=Max("id"))["last"] or 0) + 1
    unsaved = Deployment(
        id=next_id, endpoint=endpoint, model_version=model_version, traffic_percent=traffic_percent
    )
    try:
        return list(runtime.plan(deploy_spec_for(unsaved)))
    except PermanentError as exc:
        raise ServiceError(f"The runtime could not plan the deploy: {exc}") from None
    except TransientError as exc:
        raise ServiceError(f"The runtime could not plan the deploy: {exc}", code="unavailable") from None


def model_spec_for(version: ModelVersion) -> ModelSpec:
    """What serving loads: the verified ONNX form when the version has one, else the upload."""
    onnx = version.serves_onnx
    path = (version.onnx_artifact if onnx else version.artifact).path
    fmt = "onnx" if onnx else version.format
    return ModelSpec(
        name=version.model.name,
        version=version.number,
        artifact_path=path,
        sha256=version.onnx_sha256 if onnx else version.sha256,
        format=fmt,
        input_schema=tuple(version.input_schema),
        classes=tuple(version.classes),
        label_map=dict(version.label_map),
        trusted_types=() if onnx else tuple(version.trusted_types),
        linear_kernel=_linear_kernel(path) if fmt == "onnx" else None,
    )


@lru_cache(maxsize=256)
def _linear_kernel(path: str) -> dict | None:
    """A linear model's weights read from its ONNX form, for serving to check and use; None when
    the file cannot be read as one (a damaged file fails the deploy on its checksum instead).

    Read once per process: reconcile builds every live endpoint's spec each minute, and a stored
    artifact's name carries its digest, so a path always holds the same bytes."""
    from serving import onnx_graph

    try:
        kernel = onnx_graph.linear_kernel(Path(path).read_bytes())
    except Exception as exc:  # a proposal only: serving checks it, or serves without it
        log.warning("no linear kernel read from %s: %s", path, exc)
        return None
    return kernel.as_json() if kernel is not None else None


def resources_of(deployment: Deployment) -> DeploymentResources:
    """What the deployment's steps recorded (stored as JSON, written only by the steps)."""
    return cast(DeploymentResources, dict(deployment.resources))


def deploy_spec_for(deployment: Deployment) -> DeploySpec:
    endpoint = deployment.endpoint
    version = deployment.model_version
    assert version is not None, f"{deployment} deploys no version"
    live = endpoint.live_deployment
    return DeploySpec(
        endpoint=endpoint.name,
        deployment_id=deployment.pk,
        model=model_spec_for(version),
        resources=Resources(
            region=endpoint.region,
            cpu=endpoint.cpu,
            memory=endpoint.memory,
            min_instances=endpoint.min_instances,
            max_instances=endpoint.max_instances,
            concurrency=endpoint.concurrency,
            timeout_seconds=endpoint.timeout_seconds,
        ),
        access=access_policy_for(endpoint),
        traffic_percent=deployment.traffic_percent,
        previous=resources_of(live) if live and live.pk != deployment.pk else DeploymentResources(),
        rollback_to=resources_of(deployment.rollback_of) if deployment.rollback_of else DeploymentResources(),
    )


def live_spec_for(endpoint: Endpoint) -> DeploySpec:
    """The live deployment of `endpoint` as a stop or start sees it: `previous` holds what its own
    steps recorded."""
    if endpoint.live_deployment_id is None:
        raise ServiceError(f"Nothing is live on {endpoint.name}.", code="conflict")
    live = Deployment.objects.select_related("endpoint__live_deployment", "model_version__model").get(
        pk=endpoint.live_deployment_id
    )
    return replace(deploy_spec_for(live), previous=resources_of(live))


def teardown_spec_for(endpoint: Endpoint) -> TeardownSpec:
    """What deleting `endpoint` must remove: whatever its deployments made, its keys, and the
    artifacts of its versions that no other endpoint (not deleted) has deployed."""
    deploys = endpoint.deployments.filter(action=DeploymentAction.DEPLOY).order_by("pk")
    versions = ModelVersion.objects.select_related("model")
    ours = {
        spec.sha256: spec for spec in map(model_spec_for, versions.filter(deployments__endpoint=endpoint))
    }
    elsewhere = versions.filter(deployments__endpoint__deleted_at__isnull=True).exclude(
        deployments__endpoint=endpoint
    )
    for spec in map(model_spec_for, elsewhere):
        ours.pop(spec.sha256, None)
    return TeardownSpec(
        endpoint=endpoint.name,
        region=endpoint.region,
        made=tuple(resources_of(d) for d in deploys if d.resources),
        key_names=tuple(
            endpoint.api_keys.exclude(cloud_name="").order_by("pk").values_list("cloud_name", flat=True)
        ),
        artifacts=tuple(ours[sha256] for sha256 in sorted(ours)),
    )


def deployment_finish(*, deployment_id: int) -> None:
    """Mark the deployment ready and live.

    At 100% of traffic the versions it replaces become superseded (rolled back, for a rollback);
    a canary leaves the previous version ready, since it still serves the rest of the traffic.
    """
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().select_related("endpoint").get(pk=deployment_id)
        endpoint = Endpoint.objects.select_for_update().get(pk=deployment.endpoint_id)
        now = timezone.now()
        Deployment.objects.filter(pk=deployment_id).update(
            status=DeploymentStatus.READY, finished_at=now, claimed_until=None, error=""
        )
        if deployment.traffic_percent == FULL_TRAFFIC:
            # Everything else that served this endpoint (the last live version, and any version a
            # canary left serving beside it) now serves nothing.
            endpoint.deployments.filter(status=DeploymentStatus.READY).exclude(pk=deployment_id).update(
                status=DeploymentStatus.ROLLED_BACK
                if deployment.rollback_of_id
                else DeploymentStatus.SUPERSEDED
            )
        endpoint.live_deployment_id = deployment_id
        endpoint.url = deployment.resources.get("url", endpoint.url)
        endpoint.gateway_url = deployment.resources.get("gateway_url", "")
        made = deployment.resources
        address = made.get("lb_address", "") if made.get("load_balancer") else ""
        if address != endpoint.https_address:  # a new front: its certificate is read afresh
            endpoint.https_address, endpoint.certificate_status, endpoint.certificate_detail = address, "", ""
        endpoint.stopped_at = None  # a deploy serves, whatever a stop said before
        endpoint.save(
            update_fields=[
                "live_deployment",
                "url",
                "gateway_url",
                "stopped_at",
                "https_address",
                "certificate_status",
                "certificate_detail",
            ]
        )
        if endpoint.access_note:
            # The mode waited for this deploy's front (see access_for_live): push it again.
            access_sync_enqueue(endpoint)
        if deployment.rollout_status == "pending":
            from endpoints.services.rollouts import rollout_begin

            rollout_begin(deployment, now)
        audit_record(
            actor=None,
            action="deployment.ready",
            target=deployment,
            details={"url": endpoint.url, "seconds": (now - deployment.created_at).total_seconds()},
        )


def endpoints_revive() -> list[str]:
    """Start live deployments again whose serving stopped (a restart); returns the endpoints revived.

    Each endpoint is looked at under its row lock, the one every operation takes: its live
    deployment is read there, and an endpoint with an operation in progress is left to it, so a
    version that a deploy has just replaced is never started again. A stopped or deleted endpoint
    stays as it was left.
    """
    runtime = get_runtime()
    revived = []
    serving = Endpoint.objects.filter(live_deployment__isnull=False, stopped_at=None, deleted_at=None)
    for endpoint_id in serving.values_list("pk", flat=True):
        name = ""
        try:
            with transaction.atomic():
                endpoint = Endpoint.objects.select_for_update().filter(pk=endpoint_id).first()
                if endpoint is None or endpoint.live_deployment_id is None:
                    continue
                if endpoint.stopped_at or endpoint.deleted_at:
                    continue
                name = endpoint.name
                if endpoint.deployments.active().exists():
                    continue
                deployment = Deployment.objects.select_related(
                    "endpoint__live_deployment", "model_version__model", "rollback_of", "shares_with"
                ).get(pk=endpoint.live_deployment_id)
                shared = deployment.shares_with
                if (
                    deployment.traffic_percent < FULL_TRAFFIC
                    and shared
                    and shared.status == DeploymentStatus.READY
                ):
                    # A canary: the version serving the rest of the traffic comes first, on its own.
                    stable = replace(
                        deploy_spec_for(shared), traffic_percent=FULL_TRAFFIC, previous=resources_of(shared)
                    )
                    if runtime.ensure_serving(stable):
                        revived.append(f"{name} ({shared.resources.get('revision', shared.pk)})")
                if runtime.ensure_serving(deploy_spec_for(deployment)):
                    revived.append(name)
        except (PermanentError, TransientError) as exc:
            log.warning("could not revive endpoint %s: %s", name, exc)
        except Exception:  # one broken endpoint must not keep the others down
            log.exception("reviving endpoint %s crashed", name)
    return revived
