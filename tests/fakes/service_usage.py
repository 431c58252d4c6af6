"""A fake Service Usage API v1 (`google.api.serviceusage.v1.ServiceUsage`) over gRPC.

It knows Google's own services plus whatever `known()` returns (the API Gateway fake's managed
services), answers for an unknown one as Google does ("Not found or permission denied"), and
enables a service with a long-running operation (`operations/acf...`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import grpc
from google.cloud import service_usage_v1 as su
from google.longrunning import operations_pb2

from tests.fakes.grpc_server import FakeError, GrpcFake, invalid, rpc

SERVICE = "google.api.serviceusage.v1.ServiceUsage"
NAME = re.compile(r"^projects/([^/]+)/services/([^/]+)$")
GOOGLE_SERVICES = {
    "run.googleapis.com",
    "apigateway.googleapis.com",
    "apikeys.googleapis.com",
    "compute.googleapis.com",
    "servicecontrol.googleapis.com",
}


class ServiceUsageFake(GrpcFake):
    operation_prefix = "operations/acf.p2-1234567890"

    def __init__(self, known: Callable[[], set[str]] = set):
        super().__init__()
        self.known = known
        self.reset_state()

    def reset_state(self) -> None:
        self.enabled: set[tuple[str, str]] = set()

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
        state = su.State.ENABLED if (project, service) in self.enabled else su.State.DISABLED
        return su.Service(
            name=f"projects/{project}/services/{service}", parent=f"projects/{project}", state=state
        )

    @rpc(SERVICE, "GetService", su.GetServiceRequest, su.Service)
    def get_service(self, request, context):
        return self._service(*self._parse(request.name))

    @rpc(SERVICE, "EnableService", su.EnableServiceRequest, operations_pb2.Operation)
    def enable_service(self, request, context):
        project, service = self._parse(request.name)
        self.enabled.add((project, service))
        return self.operation(
            response=su.EnableServiceResponse(service=self._service(project, service)),
            metadata=su.OperationMetadata(resource_names=[request.name]),
        )
