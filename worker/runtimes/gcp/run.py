"""Cloud Run v2: one service per endpoint, one revision per deployment.

The service id is the endpoint's name (a DNS label that starts with a letter); the revision is
`<service>-d<deployment id>` (`revision_name`), so a retried deploy finds the revision it made.
The write is one `UpdateService` with `allow_missing=True` (create if absent, else update): no
read first. A revision with the same name and the same template is not made twice; Cloud Run
refuses one with the same name and a different template.

Traffic names revisions, never "latest": the new revision gets the deployment's share and the
previous live revision keeps the rest, so a revision that never becomes ready takes no traffic.

A stopped endpoint keeps its service, traffic and URL, scaled to no instance at all: service-level
manual scaling with an instance count of 0. Starting it (and any deploy or rollback) puts the
service back on automatic scaling, where the revision's own min and max instances apply again.
"""

from __future__ import annotations

import json
import re

from google.api_core import exceptions as gexc
from google.cloud import run_v2
from google.protobuf import duration_pb2

from worker.runtimes.base import DeploySpec, PermanentError, revision_name
from worker.runtimes.gcp.clients import Context
from worker.runtimes.gcp.config import SERVICE_ACCOUNT
from worker.runtimes.gcp.operations import operation_result
from worker.runtimes.gcp.storage import model_uri
from worker.runtimes.resources import DeploymentResources

SERVICE_ID = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
REVISION_ID = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
CONTAINER_PORT = 8080
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
KEY_MODES = ("api_key", "both")
ADDRESS_MODES = ("ip_allowlist",)
#: Modes Cloud Run's own IAM check enforces: the caller's Google ID token, the service's invokers.
IAM_MODES = ("identity",)
MANAGED_BY = "model-endpoint-portal"


def service_id(endpoint: str) -> str:
    if not SERVICE_ID.match(endpoint) or len(endpoint) >= 50:
        raise PermanentError(
            f"{endpoint!r} cannot name a Cloud Run service: it must start with a letter, not end with a "
            "hyphen, and have fewer than 50 lowercase letters, digits and hyphens."
        )
    return endpoint


def service_name(ctx: Context, endpoint: str, region: str) -> str:
    return f"projects/{ctx.cfg.project}/locations/{region}/services/{service_id(endpoint)}"


def revision_id(spec: DeploySpec) -> str:
    revision = revision_name(service_id(spec.endpoint), spec.deployment_id)
    if not REVISION_ID.match(revision):
        raise PermanentError(f"Revision name {revision!r} is longer than Cloud Run's 63 characters.")
    return revision


def ingress_for(mode: str) -> run_v2.IngressTraffic:
    """Allowlist endpoints take traffic only through their load balancer (where Cloud Armor is)."""
    ingress = run_v2.IngressTraffic
    # The call gives the member its enum type (proto-plus types enum members as int).
    if mode in ADDRESS_MODES:
        return ingress(ingress.INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER)
    return ingress(ingress.INGRESS_TRAFFIC_ALL)


def custom_audiences(spec: DeploySpec) -> list[str]:
    """The identity mode's audience when it is not the service's URL (which Cloud Run always takes)."""
    identity = spec.access.identity
    if spec.access.mode in IAM_MODES and identity is not None and identity.audience:
        return [identity.audience]
    return []


def scaling(*, stopped: bool) -> run_v2.ServiceScaling:
    """Service-level scaling: none of the service's instances when stopped, else automatic."""
    mode = run_v2.ServiceScaling.ScalingMode
    if stopped:
        return run_v2.ServiceScaling(scaling_mode=mode.MANUAL, manual_instance_count=0)
    return run_v2.ServiceScaling(scaling_mode=mode.AUTOMATIC)


def is_stopped(service: run_v2.Service) -> bool:
    manual = run_v2.ServiceScaling.ScalingMode.MANUAL
    return service.scaling.scaling_mode == manual and service.scaling.manual_instance_count == 0


def traffic_for(spec: DeploySpec, revision: str) -> list[run_v2.TrafficTarget]:
    previous = spec.previous.get("revision")
    if spec.traffic_percent < 100 and previous and previous != revision:
        return [
            run_v2.TrafficTarget(type_=REVISION, revision=revision, percent=spec.traffic_percent),
            run_v2.TrafficTarget(type_=REVISION, revision=previous, percent=100 - spec.traffic_percent),
        ]
    return [run_v2.TrafficTarget(type_=REVISION, revision=revision, percent=100)]


def build_service(ctx: Context, spec: DeploySpec) -> run_v2.Service:
    """The whole desired service for this deployment."""
    res = spec.resources
    name = service_name(ctx, spec.endpoint, res.region)
    revision = revision_id(spec)
    account = ctx.cfg.service_account_for(spec.endpoint)
    if not SERVICE_ACCOUNT.match(account):
        raise PermanentError(
            f"The service account {account!r} (GCP_SERVICE_ACCOUNT_TEMPLATE) is not valid: an account id "
            "has 6 to 30 lowercase letters, digits and hyphens."
        )
    labels = {"managed-by": MANAGED_BY, "portal-endpoint": spec.endpoint}
    meta = json.dumps(spec.model.meta(), separators=(",", ":"), sort_keys=True)
    return run_v2.Service(
        name=name,
        description=f"Model endpoint {spec.endpoint}"[:512],
        labels=labels,
        ingress=ingress_for(spec.access.mode),
        # Key modes: only the gateway's account may invoke (IAM). Identity mode: the endpoint's
        # invokers, each calling with a Google ID token for the service's URL (or the custom
        # audience) that Cloud Run checks before the container sees the request. Allowlist and
        # open modes: no caller identity exists (load balancer, public), so IAM checks are off and
        # ingress decides.
        invoker_iam_disabled=spec.access.mode not in KEY_MODES + IAM_MODES,
        custom_audiences=custom_audiences(spec),
        scaling=scaling(stopped=False),  # a deploy serves, whether or not the endpoint was stopped
        template=run_v2.RevisionTemplate(
            revision=revision,
            labels={**labels, "portal-deployment": str(spec.deployment_id)},
            scaling=run_v2.RevisionScaling(
                min_instance_count=res.min_instances, max_instance_count=res.max_instances
            ),
            timeout=duration_pb2.Duration(seconds=res.timeout_seconds),
            service_account=account,
            max_instance_request_concurrency=res.concurrency,
            containers=[
                run_v2.Container(
                    name="serving",
                    image=ctx.cfg.image_for(spec.model.format),
                    env=[
                        run_v2.EnvVar(name="SERVING_MODEL_URI", value=model_uri(ctx, spec.model)),
                        run_v2.EnvVar(name="SERVING_MODEL_META", value=meta),
                    ],
                    resources=run_v2.ResourceRequirements(
                        limits={"cpu": res.cpu, "memory": res.memory}, cpu_idle=True, startup_cpu_boost=True
                    ),
                    ports=[run_v2.ContainerPort(name="http1", container_port=CONTAINER_PORT)],
                )
            ],
        ),
        traffic=traffic_for(spec, revision),
    )


def start_write(ctx: Context, service: run_v2.Service, what: str, **request) -> DeploymentResources:
    """Start the write of `service` (an UpdateServiceRequest with `request`'s options); the
    resources a later step waits on it with (`written`)."""
    started = ctx.wall()
    operation = ctx.call(
        ctx.clients.run().update_service,
        request=run_v2.UpdateServiceRequest(service=service, **request),
        what=what,
    )
    return {"run_operation": operation.operation.name, "run_operation_started": started}


def written(ctx: Context, resources: DeploymentResources, what: str) -> run_v2.Service:
    """The service once the write `start_write` began is done (Transient/Pending until then)."""
    return operation_result(
        ctx,
        ctx.clients.run(),
        resources["run_operation"],
        what=what,
        started=resources["run_operation_started"],
        result_cls=run_v2.Service,
    )


def rewrite(ctx: Context, name: str, change, what: str) -> DeploymentResources:
    """Read the service, `change(service)` in place, and start its write."""
    service = ctx.call(ctx.clients.run().get_service, name=name, what=f"Read {name}")
    change(service)
    return start_write(ctx, service, what)


def deploy_revision(ctx: Context, spec: DeploySpec) -> DeploymentResources:
    """Start the write of the service with this deployment's revision; return its operation."""
    service = build_service(ctx, spec)
    revision = service.template.revision
    return {
        "service": service.name,
        "revision": revision,
        **start_write(ctx, service, f"Deploy Cloud Run revision {revision}", allow_missing=True),
        "traffic": [{"revision": t.revision, "percent": t.percent} for t in service.traffic],
    }


def validate_revision(ctx: Context, spec: DeploySpec) -> tuple[run_v2.Service, bool]:
    """Send the write `deploy_revision` would send with `validate_only`: the service, and whether
    Cloud Run answered that it checked it."""
    service = build_service(ctx, spec)
    operation = ctx.call(
        ctx.clients.run().update_service,
        request=run_v2.UpdateServiceRequest(service=service, allow_missing=True, validate_only=True),
        what=f"Validate Cloud Run revision {service.template.revision}",
    )
    return service, bool(operation.operation.done)


def wait_revision(ctx: Context, resources: DeploymentResources) -> DeploymentResources:
    """Wait for the deploy operation; the revision must be ready, else fail with Cloud Run's message."""
    revision = resources["revision"]
    service = written(ctx, resources, f"Cloud Run revision {revision}")
    if service.latest_ready_revision.rsplit("/", 1)[-1] != revision:
        message = service.terminal_condition.message or "the revision did not become ready"
        raise PermanentError(f"Cloud Run revision {revision}: {message}")
    return {"url": service.uri, "run_url": service.uri, "service_generation": service.generation}


def set_traffic(ctx: Context, name: str, targets: list[tuple[str, int]]) -> DeploymentResources:
    """Move traffic between existing revisions (rollback); returns the started operation."""

    def move(service: run_v2.Service) -> None:
        service.traffic = [
            run_v2.TrafficTarget(type_=REVISION, revision=rev, percent=pct) for rev, pct in targets
        ]
        service.scaling = scaling(stopped=False)  # a rollback serves, whether or not the endpoint was stopped

    return rewrite(ctx, name, move, f"Move traffic of {name}")


def set_scaling(ctx: Context, name: str, *, stopped: bool) -> DeploymentResources:
    """Start the write of the service's scaling (`scaling`); the revisions and traffic stay."""

    def scale(service: run_v2.Service) -> None:
        service.scaling = scaling(stopped=stopped)

    return {"service": name, **rewrite(ctx, name, scale, f"{'Stop' if stopped else 'Start'} {name}")}


def wait_scaling(ctx: Context, resources: DeploymentResources, *, stopped: bool) -> run_v2.Service:
    """Wait for a scaling write; the service must then be stopped (or not), as asked."""
    service = written(ctx, resources, f"{'Stop' if stopped else 'Start'} {resources['service']}")
    if is_stopped(service) != stopped:
        raise PermanentError(f"{resources['service']} did not take the new scaling: {service.scaling}")
    return service


def portal_service(ctx: Context, name: str) -> run_v2.Service | None:
    """The service of that exact name if the portal made it (its label says so), else None."""
    service = ctx.call(ctx.clients.run().get_service, name=name, what=f"Read {name}", accept=(gexc.NotFound,))
    if service is None or service.labels.get("managed-by") != MANAGED_BY:
        return None
    return service


def wait_traffic(ctx: Context, resources: DeploymentResources) -> DeploymentResources:
    """Wait for a traffic move; the named revision must then serve all of it."""
    revision = resources["revision"]
    service = written(ctx, resources, f"Move traffic to {revision}")
    serving = {status.revision: status.percent for status in service.traffic_statuses}
    if serving.get(revision) != 100:
        message = service.terminal_condition.message or f"traffic is {serving}"
        raise PermanentError(f"Traffic did not move to {revision}: {message}")
    return {"run_url": service.uri}


def split_traffic(ctx: Context, name: str, targets: list[tuple[str, int]]) -> str:
    """Set the service's traffic to `targets` (revision, percent) and wait for Cloud Run to serve
    it (a progressive deploy's step, or its rollback); the split it serves, as words."""
    service = written(ctx, set_traffic(ctx, name, targets), f"Move traffic of {name}")
    serving = {status.revision: status.percent for status in service.traffic_statuses if status.percent}
    wanted = {revision: percent for revision, percent in targets if percent}
    if serving != wanted:
        message = service.terminal_condition.message or f"traffic is {serving}"
        raise PermanentError(f"Traffic of {name} did not move to {wanted}: {message}")
    return ", ".join(f"{revision} {percent}%" for revision, percent in targets if percent)
