"""A fake Service Usage API v1 (`google.api.serviceusage.v1.ServiceUsage`) over gRPC.

It knows Google's own services plus whatever `known()` returns (the API Gateway fake's managed
services), answers for an unknown one as Google does ("Not found or permission denied"), and
enables a service with a long-running operation (`operations/acf...`): the service is enabled
when the operation is done, and another EnableService of it meanwhile is refused (FAILED_PRECONDITION,
"Another activation or deactivation is in progress"). Google's services are enabled unless the
project (tests.fakes.project) has them disabled, as a fresh one does. `BatchGetServices` takes at
most 30 names, each under the request's `parent`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import grpc
from google.cloud import service_usage_v1 as su
from google.longrunning import operations_pb2

from tests.fakes.grpc_server import FakeError, GrpcFake, invalid, rpc
from tests.fakes.project import TITLES

SERVICE = "google.api.serviceusage.v1.ServiceUsage"
NAME = re.compile(r"^projects/([^/]+)/services/([^/]+)$")
GOOGLE_SERVICES = set(TITLES)
BATCH_LIMIT = 30


class ServiceUsageFake(GrpcFake):
    api = "serviceusage.googleapis.com"

    operation_prefix = "operations/acf.p2-1234567890"

    def __init__(self, known: Callable[[], set[str]] = set):
        super().__init__()
        self.known = known
        self.reset_state()

    def reset_state(self) -> None:
        self.enabled: set[tuple[str, str]] = set()  # (project, managed service)
        self.enabling: set[tuple[str, str]] = set()  # an enable operation still running

    def _parse(self, name: str) -> tuple[str, str]:
        match = NAME.match(name)
        if not match:
            raise invalid(f"Invalid service name {name!r}.")
        project, service = match.groups()
        if service not in GOOGLE_SERVICES | set(self.known()):
            raise FakeError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Not found or permission denied for service(s): {service}.",
            )
        return project, service

    def _service(self, project: str, service: str) -> su.Service:
        google = service in GOOGLE_SERVICES and not self.project.is_disabled(service)
        on = google or (project, service) in self.enabled
        state = su.State.ENABLED if on else su.State.DISABLED
        return su.Service(
            name=f"projects/{project}/services/{service}", parent=f"projects/{project}", state=state
        )

    @rpc(SERVICE, "GetService", su.GetServiceRequest, su.Service)
    def get_service(self, request, context):
        return self._service(*self._parse(request.name))

    @rpc(SERVICE, "BatchGetServices", su.BatchGetServicesRequest, su.BatchGetServicesResponse)
    def batch_get_services(self, request, context):
        if len(request.names) > BATCH_LIMIT:
            raise invalid(f"A single request can get a maximum of {BATCH_LIMIT} services.")
        services = [self._service(*self._parse(name)) for name in request.names]
        for service in services:
            if request.parent and service.parent != request.parent:
                raise invalid(f"Service {service.name} is not under parent {request.parent}.")
        return su.BatchGetServicesResponse(services=services)

    @rpc(SERVICE, "EnableService", su.EnableServiceRequest, operations_pb2.Operation)
    def enable_service(self, request, context):
        project, service = self._parse(request.name)
        key = (project, service)
        if key in self.enabling:
            raise FakeError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Another activation or deactivation is in progress for service {service}. "
                "Wait for it to finish and try again.",
            )

        def finish() -> None:
            self.enabling.discard(key)
            self.enabled.add(key)
            self.project.disabled.discard(service)

        self.enabling.add(key)
        enabled = su.Service(name=request.name, parent=f"projects/{project}", state=su.State.ENABLED)
        return self.operation(
            response=su.EnableServiceResponse(service=enabled),
            metadata=su.OperationMetadata(resource_names=[request.name]),
            finish=finish,
        )
