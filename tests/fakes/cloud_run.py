"""A fake Cloud Run Admin API v2 (`google.cloud.run.v2.Services` and `.Revisions`) over gRPC.

It keeps services, revisions and IAM policies, and holds to the rules Google documents
(GOOGLE-APIS.md d.1): service ids start with a letter, have fewer than 50 characters and do not
end with a hyphen; a custom revision name starts with `<service>-`; one container port; reserved
env names refused; traffic percents total 100 and point at revisions that exist (or the one being
made); tags of at least 3 characters; CPU under 1 only with concurrency 1; memory within the range
the CPU allows (more than 4 GiB needs 2 vCPUs, 8 GiB 4, 16 GiB 6, 24 GiB 8; under 1 vCPU at most
1 GiB, under 0.5 at most 512 MiB), refused with Cloud Run's INVALID_ARGUMENT message; timeout at
most 3600 s.
Writes are long-running operations whose response (and metadata) is the Service. A revision the
test marked as failing (`fail_revision`) never becomes ready: the operation ends with Cloud Run's
message, `terminal_condition` says so, and the traffic stays where it was.
`SetIamPolicy` with a stale etag answers ABORTED, as IAM does; without an etag it overwrites.
Service-level scaling (`ServiceScaling`: automatic, or manual with `manual_instance_count`
instances, 0 included) is kept as sent; a negative count is refused. `ListServices` takes one
region: its parent "cannot be the "-" wildcard" (google.cloud.run.v2 ListServicesRequest), and is
refused with INVALID_ARGUMENT. `DeleteService` is a long-running operation; the service (and its
revisions) are gone when it completes.
"""

from __future__ import annotations

import hashlib
import re

import grpc
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.longrunning import operations_pb2
from google.protobuf import timestamp_pb2

from serving.config import Settings as ServingSettings
from tests.fakes.grpc_server import FakeError, GrpcFake, already_exists, invalid, next_number, not_found, rpc

SERVICES = "google.cloud.run.v2.Services"
REVISIONS = "google.cloud.run.v2.Revisions"
SERVICE_NAME = re.compile(r"^projects/([^/]+)/locations/([^/]+)/services/([^/]+)$")
SERVICE_ID = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
RESERVED_ENV = {"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"}
CPU = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
MEMORY = re.compile(r"^\d+(Ki|Mi|Gi|M|G)$")
MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "M": 10**6, "G": 10**9}
#: (at least this many vCPUs, least memory, most memory): "Configure CPU limits for services".
MEMORY_FOR_CPU = (
    (8, "4Gi", "32Gi"),
    (6, "4Gi", "24Gi"),
    (4, "2Gi", "16Gi"),
    (2, "128Mi", "8Gi"),
    (1, "128Mi", "4Gi"),
    (0.5, "128Mi", "1Gi"),
    (0, "128Mi", "512Mi"),
)
FORBIDDEN_LABEL_PREFIXES = (
    "run.googleapis.com",
    "cloud.googleapis.com",
    "serving.knative.dev",
    "autoscaling.knative.dev",
)
State = run_v2.Condition.State
Allocation = run_v2.TrafficTargetAllocationType
#: How long the serving container retries its model download (serving's SERVING_DOWNLOAD_WAIT_SECONDS).
DOWNLOAD_WAIT_SECONDS = ServingSettings.download_wait
DEFAULT_FAILURE = (
    "The user-provided container failed to start and listen on the port defined provided by the "
    "PORT=8080 environment variable within the allocated timeout."
)


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _operations(name: str) -> str:
    return "/".join(name.split("/")[:4]) + "/operations"


def _cpu_value(cpu: str) -> float:
    return int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)


def _bytes(memory: str) -> int:
    number, unit = re.match(r"^(\d+)(\D*)$", memory).groups()
    return int(number) * MEMORY_UNITS[unit]


class CloudRunFake(GrpcFake):
    api = "run.googleapis.com"

    def reset_state(self) -> None:
        self.services: dict[str, run_v2.Service] = {}
        self.revisions: dict[str, run_v2.Revision] = {}
        self.templates: dict[str, bytes] = {}
        self.policies: dict[str, policy_pb2.Policy] = {}
        self.failing_revisions: dict[str, str] = {}

    def __init__(self):
        super().__init__()
        self.reset_state()

    # --- test controls -----------------------------------------------------------------------

    def fail_revision(self, revision_id: str, message: str = DEFAULT_FAILURE) -> None:
        """The revision of this id will never become ready."""
        with self.lock:
            self.failing_revisions[revision_id] = message

    def service(self, name: str) -> run_v2.Service:
        with self.lock:
            return run_v2.Service(self.services[name])

    def revision_ids(self, service_name: str) -> list[str]:
        with self.lock:
            return sorted(
                name.rsplit("/", 1)[1] for name in self.revisions if name.startswith(service_name + "/")
            )

    def policy(self, name: str) -> policy_pb2.Policy:
        with self.lock:
            return self.policies[name]

    # --- Services ----------------------------------------------------------------------------

    @rpc(SERVICES, "CreateService", run_v2.CreateServiceRequest, operations_pb2.Operation)
    def create_service(self, request, context):
        match = re.match(r"^projects/([^/]+)/locations/([^/]+)$", request.parent)
        if not match:
            raise invalid(f"Invalid parent {request.parent!r}.")
        self._check_service_id(request.service_id)
        if request.service.name:
            raise invalid("service.name must be empty on create; it is set from parent and service_id.")
        name = f"{request.parent}/services/{request.service_id}"
        if name in self.services:
            raise already_exists(f"Resource '{request.service_id}' already exists.")
        return self._write(name, request.service, creating=True, validate_only=request.validate_only)

    @rpc(SERVICES, "UpdateService", run_v2.UpdateServiceRequest, operations_pb2.Operation)
    def update_service(self, request, context):
        name = request.service.name
        match = SERVICE_NAME.match(name)
        if not match:
            raise invalid(f"Invalid service name {name!r}.")
        self._check_service_id(match.group(3))
        current = self.services.get(name)
        if current is None and not request.allow_missing:
            raise not_found(f"Resource '{match.group(3)}' of kind 'SERVICE'")
        if current is not None and request.service.etag and request.service.etag != current.etag:
            raise FakeError(grpc.StatusCode.ABORTED, "The etag does not match the current service.")
        return self._write(
            name, request.service, creating=current is None, validate_only=request.validate_only
        )

    @rpc(SERVICES, "GetService", run_v2.GetServiceRequest, run_v2.Service)
    def get_service(self, request, context):
        if request.name not in self.services:
            raise not_found(f"Resource '{request.name.rsplit('/', 1)[-1]}' of kind 'SERVICE'")
        return self.services[request.name]

    @rpc(SERVICES, "ListServices", run_v2.ListServicesRequest, run_v2.ListServicesResponse)
    def list_services(self, request, context):
        match = re.match(r"^projects/([^/]+)/locations/([^/]+)$", request.parent)
        if not match or match.group(2) == "-":
            raise invalid(
                f"Invalid parent {request.parent!r}: the location must be a valid Google Cloud region, and "
                'cannot be the "-" wildcard.'
            )
        found = [
            service
            for name, service in sorted(self.services.items())
            if name.startswith(request.parent + "/")
        ]
        return run_v2.ListServicesResponse(services=found)

    @rpc(SERVICES, "DeleteService", run_v2.DeleteServiceRequest, operations_pb2.Operation)
    def delete_service(self, request, context):
        service = self.services.get(request.name)
        if service is None:
            raise not_found(f"Resource '{request.name.rsplit('/', 1)[-1]}' of kind 'SERVICE'")
        prefix = _operations(service.name)
        if request.validate_only:
            return self.operation(response=service, metadata=service, prefix=prefix)

        def gone():
            self.services.pop(request.name, None)
            self.policies.pop(request.name, None)
            for revision in [r for r in self.revisions if r.startswith(request.name + "/")]:
                del self.revisions[revision]
                self.templates.pop(revision, None)

        return self.operation(response=service, metadata=service, prefix=prefix, finish=gone)

    @rpc(SERVICES, "GetIamPolicy", iam_policy_pb2.GetIamPolicyRequest, policy_pb2.Policy)
    def get_iam_policy(self, request, context):
        if request.resource not in self.services:
            raise not_found(f"Resource '{request.resource}'")
        return self.policies.setdefault(request.resource, policy_pb2.Policy(version=1, etag=b"\x00etag0"))

    @rpc(SERVICES, "SetIamPolicy", iam_policy_pb2.SetIamPolicyRequest, policy_pb2.Policy)
    def set_iam_policy(self, request, context):
        if request.resource not in self.services:
            raise not_found(f"Resource '{request.resource}'")
        current = self.policies.setdefault(request.resource, policy_pb2.Policy(version=1, etag=b"\x00etag0"))
        if request.policy.etag and request.policy.etag != current.etag:
            raise FakeError(
                grpc.StatusCode.ABORTED,
                "There were concurrent policy changes. Please retry the whole read-modify-write with "
                "exponential backoff.",
            )
        for binding in request.policy.bindings:
            if not binding.role.startswith("roles/"):
                raise invalid(f"Role {binding.role} is not supported for this resource.")
            for member in binding.members:
                if not re.match(
                    r"^(allUsers|allAuthenticatedUsers|(user|serviceAccount|group|domain):.+)$", member
                ):
                    raise invalid(f"Invalid member {member!r}.")
        policy = policy_pb2.Policy()
        policy.CopyFrom(request.policy)
        policy.etag = f"\x00etag{next_number()}".encode()
        self.policies[request.resource] = policy
        return policy

    # --- Revisions ---------------------------------------------------------------------------

    @rpc(REVISIONS, "GetRevision", run_v2.GetRevisionRequest, run_v2.Revision)
    def get_revision(self, request, context):
        if request.name not in self.revisions:
            raise not_found(f"Resource '{request.name.rsplit('/', 1)[-1]}' of kind 'REVISION'")
        return self.revisions[request.name]

    @rpc(REVISIONS, "ListRevisions", run_v2.ListRevisionsRequest, run_v2.ListRevisionsResponse)
    def list_revisions(self, request, context):
        found = [rev for name, rev in sorted(self.revisions.items()) if name.startswith(request.parent + "/")]
        return run_v2.ListRevisionsResponse(revisions=found)

    # --- the rules ---------------------------------------------------------------------------

    def _check_service_id(self, service_id: str) -> None:
        if not SERVICE_ID.match(service_id) or len(service_id) >= 50:
            raise invalid(
                f"service_id {service_id!r} is invalid: it must begin with a letter, cannot end with a "
                "hyphen, and must contain fewer than 50 characters."
            )

    def _check_template(self, service_id: str, template: run_v2.RevisionTemplate) -> None:
        if template.revision:
            if not template.revision.startswith(service_id + "-"):
                raise invalid(f"Revision name {template.revision!r} must be prefixed by '{service_id}-'.")
            if not DNS_LABEL.match(template.revision):
                raise invalid(
                    f"Revision name {template.revision!r} must be a DNS label of at most 63 characters."
                )
        if not template.containers:
            raise invalid("template.containers: at least one container is required.")
        ports = [port for container in template.containers for port in container.ports]
        if len(ports) > 1:
            raise invalid("template.containers: only one container port may be specified.")
        for container in template.containers:
            if not container.image:
                raise invalid("template.containers.image is required.")
            names = [env.name for env in container.env]
            if len(names) != len(set(names)):
                raise invalid("template.containers.env: names must be unique.")
            reserved = RESERVED_ENV.intersection(names)
            if reserved:
                raise invalid(
                    f"The following reserved env names were provided: {', '.join(sorted(reserved))}."
                )
            cpu = container.resources.limits.get("cpu", "1")
            memory = container.resources.limits.get("memory", "512Mi")
            if not CPU.match(cpu):
                raise invalid(f"Invalid value for CPU limit: {cpu!r}.")
            if not MEMORY.match(memory):
                raise invalid(f"Invalid value for memory limit: {memory!r}.")
            if _cpu_value(cpu) < 1 and template.max_instance_request_concurrency > 1:
                raise invalid("Total cpu < 1 is not supported with concurrency > 1.")
            least, most = next(row[1:] for row in MEMORY_FOR_CPU if _cpu_value(cpu) >= row[0])
            if not _bytes(least) <= _bytes(memory) <= _bytes(most):
                raise invalid(
                    "template.containers.resources.limits.memory: Invalid value specified for memory. "
                    f"For {_cpu_value(cpu):.1f} CPU, memory must be between {least} and {most} inclusive."
                )
        if template.timeout.seconds > 3600:
            raise invalid("template.timeout must be at most 3600 seconds.")
        scaling = template.scaling
        if scaling.max_instance_count and scaling.min_instance_count > scaling.max_instance_count:
            raise invalid("template.scaling: min_instance_count must not exceed max_instance_count.")
        if template.max_instance_request_concurrency > 1000:
            raise invalid("template.max_instance_request_concurrency must be at most 1000.")

    def _check_labels(self, labels, where: str) -> None:
        for key in labels:
            if key.split("/")[0].endswith(FORBIDDEN_LABEL_PREFIXES):
                raise invalid(f"{where}: the key {key!r} uses a namespace reserved by Google.")

    def _check_traffic(self, name: str, service: run_v2.Service, new_revision: str) -> None:
        if not service.traffic:
            return
        total = sum(target.percent for target in service.traffic)
        if total != 100:
            raise invalid(f"Traffic percents must add up to 100, not {total}.")
        for target in service.traffic:
            if target.tag and len(target.tag) < 3:
                raise invalid(f"Traffic tag {target.tag!r} must be at least 3 characters.")
            if target.type_ == Allocation.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION:
                if (
                    target.revision != new_revision
                    and f"{name}/revisions/{target.revision}" not in self.revisions
                ):
                    raise invalid(f"Revision {target.revision!r} referenced in traffic not found.")

    # --- writing a service -------------------------------------------------------------------

    def _write(self, name: str, requested: run_v2.Service, *, creating: bool, validate_only: bool):
        project, location, service_id = SERVICE_NAME.match(name).groups()
        template = requested.template
        self._check_template(service_id, template)
        self._check_account(template.service_account)
        self._check_labels(requested.labels, "labels")
        self._check_labels(requested.annotations, "annotations")
        self._check_labels(template.labels, "template.labels")
        if requested.scaling.manual_instance_count < 0:
            raise invalid("scaling.manual_instance_count must not be negative.")
        current = self.services.get(name)
        generation = (current.generation if current else 0) + 1
        revision_id = (
            template.revision
            or f"{service_id}-{generation:05d}-{hashlib.sha1(name.encode()).hexdigest()[:3]}"
        )
        revision_name = f"{name}/revisions/{revision_id}"
        self._check_traffic(name, requested, revision_id)
        template_key = self._template_key(template)
        existing = self.revisions.get(revision_name)
        if existing is not None and self.templates.get(revision_name) != template_key:
            raise already_exists(
                f"Revision named '{revision_id}' with different configuration already exists."
            )

        service = run_v2.Service(requested)
        service.name = name
        service.uid = current.uid if current else hashlib.sha1(name.encode()).hexdigest()
        service.generation = generation
        service.observed_generation = generation
        service.create_time = current.create_time if current else _now()
        service.update_time = _now()
        service.etag = f'"{next_number()}"'
        service.reconciling = False
        hash10 = hashlib.sha1(project.encode()).hexdigest()[:10]
        service.uri = f"https://{service_id}-{hash10}-{location[:2]}.a.run.app"
        service.urls = [service.uri]
        if not service.ingress:
            service.ingress = run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL
        if not service.traffic:
            service.traffic = [
                run_v2.TrafficTarget(type_=Allocation.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, percent=100)
            ]
        starts_in, failure = self._start(template)
        failure = self.failing_revisions.get(revision_id, failure)
        service.latest_created_revision = revision_name
        if failure is None:
            service.latest_ready_revision = revision_name
            service.terminal_condition = run_v2.Condition(
                type_="Ready", state=State.CONDITION_SUCCEEDED, last_transition_time=_now()
            )
            service.traffic_statuses = [
                run_v2.TrafficTargetStatus(
                    type_=target.type_,
                    revision=target.revision
                    or (
                        revision_id
                        if target.type_ == Allocation.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
                        else ""
                    ),
                    percent=target.percent,
                    tag=target.tag,
                    uri=f"https://{target.tag}---{service.uri[8:]}" if target.tag else "",
                )
                for target in service.traffic
            ]
        else:
            message = f"Revision '{revision_id}' is not ready and cannot serve traffic. {failure}"
            service.latest_ready_revision = current.latest_ready_revision if current else ""
            service.traffic_statuses = list(current.traffic_statuses) if current else []
            service.terminal_condition = run_v2.Condition(
                type_="Ready", state=State.CONDITION_FAILED, message=message, last_transition_time=_now()
            )
        if validate_only:
            return self.operation(response=service, metadata=service, prefix=_operations(service.name))
        self.services[name] = service
        if existing is None:
            self.templates[revision_name] = template_key
            self.revisions[revision_name] = run_v2.Revision(
                name=revision_name,
                service=name,
                generation=1,
                create_time=_now(),
                labels=template.labels,
                scaling=template.scaling,
                timeout=template.timeout,
                service_account=template.service_account,
                containers=template.containers,
                max_instance_request_concurrency=template.max_instance_request_concurrency,
                conditions=[
                    run_v2.Condition(
                        type_="Ready",
                        state=State.CONDITION_FAILED if failure else State.CONDITION_SUCCEEDED,
                        message=failure or "",
                    )
                ],
            )
        if failure is not None:
            return self.operation(
                metadata=service,
                prefix=_operations(name),
                error=FakeError(grpc.StatusCode.FAILED_PRECONDITION, service.terminal_condition.message),
                takes=starts_in,
            )
        return self.operation(
            response=service, metadata=service, prefix=_operations(service.name), takes=starts_in
        )

    def _check_account(self, account: str) -> None:
        """Cloud Run refuses to run as an account IAM made moments ago, as it would one that is
        not there or that the caller may not act as."""
        if account and not self.project.seen_by_every_service(account):
            raise FakeError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission 'iam.serviceaccounts.actAs' denied on service account {account} "
                "(or it may not exist).",
            )

    def _start(self, template: run_v2.RevisionTemplate) -> tuple[float, str | None]:
        """How long the container takes to start, and why it never does (None: it does). The serving
        container downloads its model from the gs:// URI as the revision's account; while that
        account's bucket grant propagates the download is refused, and the container retries for
        SERVING_DOWNLOAD_WAIT_SECONDS before it gives up."""
        env = {var.name: var.value for container in template.containers for var in container.env}
        uri = env.get("SERVING_MODEL_URI", "")
        if not (uri.startswith("gs://") and template.service_account):
            return 0.0, None
        bucket = uri.removeprefix("gs://").split("/", 1)[0]
        member = f"serviceAccount:{template.service_account}"
        holds_in = self.project.grant_holds_in(bucket, member)
        patience = float(env.get("SERVING_DOWNLOAD_WAIT_SECONDS", DOWNLOAD_WAIT_SECONDS))
        if holds_in <= patience:
            return holds_in, None
        refused = (
            f"The model download from {uri} was refused for {patience:.0f} s (403: "
            f"{template.service_account} does not have storage.objects.get access to the Google Cloud "
            f"Storage object). {DEFAULT_FAILURE}"
        )
        return patience, refused

    @staticmethod
    def _template_key(template: run_v2.RevisionTemplate) -> bytes:
        return run_v2.RevisionTemplate.pb(template).SerializeToString(deterministic=True)
