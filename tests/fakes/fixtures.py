"""Pytest fixtures that run the fake Google servers (and the fake Kubernetes API server) and point
the runtimes at them.

The servers start once per test session (each on its own loopback port, like Google's separate
hosts) and are reset before each test. Import the fixtures where they are used:

    from tests.fakes.fixtures import *  # noqa: F403  (the fixtures in __all__)

`gcp` is a GcpRuntime on the fakes whose waits are recorded, not slept (`gcp.ctx.slept`).
`gcp_settings` sets RUNTIME=gcp and the GCP_* settings for code that calls `get_runtime()`.
`fake_kubernetes` is the fake Kubernetes API server (tests/fakes/kubernetes_api) with its kubeconfig.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.api_gateway import ApiGatewayFake
from tests.fakes.api_keys import ApiKeysFake
from tests.fakes.cloud_logging import CloudLoggingFake
from tests.fakes.cloud_monitoring import CloudMonitoringFake
from tests.fakes.cloud_run import CloudRunFake
from tests.fakes.compute import ComputeFake
from tests.fakes.iam_admin import IamAdminFake
from tests.fakes.kubernetes_api import FakeKubernetes, KubernetesApiFake, write_kubeconfig
from tests.fakes.project import FakeProject
from tests.fakes.resource_manager import ResourceManagerFake
from tests.fakes.service_usage import ServiceUsageFake
from tests.fakes.storage import StorageFake
from worker.runtimes.gcp.runtime import GcpRuntime

__all__ = [
    "artifact",
    "clock",
    "fake_kubernetes",
    "fake_kubernetes_server",
    "fake_servers",
    "fakes",
    "gcp",
    "gcp_settings",
    "on_the_clock",
]

PROJECT = "portal-test"
BUCKET = "portal-artifacts"
GATEWAY_SA = "portal-gateway@portal-test.iam.gserviceaccount.com"


@dataclass
class Fakes:
    run: CloudRunFake
    storage: StorageFake
    keys: ApiKeysFake
    gateway: ApiGatewayFake
    usage: ServiceUsageFake
    compute: ComputeFake
    iam: IamAdminFake
    projects: ResourceManagerFake
    logging: CloudLoggingFake
    monitoring: CloudMonitoringFake
    project: FakeProject

    def by_api(self) -> dict[str, Any]:
        """Each fake by the GCP_API_ENDPOINT_OVERRIDES name of the API it fakes."""
        return {
            "run": self.run,
            "storage": self.storage,
            "apikeys": self.keys,
            "apigateway": self.gateway,
            "serviceusage": self.usage,
            "compute": self.compute,
            "iam": self.iam,
            "resourcemanager": self.projects,
            "logging": self.logging,
            "monitoring": self.monitoring,
        }

    def all(self):
        return list(self.by_api().values())

    def overrides(self) -> str:
        return ",".join(f"{api}={fake.endpoint}" for api, fake in self.by_api().items())

    def methods(self) -> dict[str, list[str]]:
        """Every call each fake received, by API."""
        return {api: fake.methods() for api, fake in self.by_api().items() if fake.methods()}

    def fresh(self) -> None:
        """A project nobody set up: only the APIs a new project has on, Google's propagation
        delays, no artifact bucket, no gateway account, and a caller that holds no permission."""
        self.project.fresh()
        self.storage.drop_bucket(BUCKET)
        self.iam.remove(GATEWAY_SA)
        for holder in (self.storage.permissions, self.iam.permissions, self.projects.permissions):
            holder.revoke_all()

    def held(self) -> dict[str, list]:
        """Everything the fakes hold, by kind (kinds holding nothing left out)."""
        readers = [
            member
            for binding in self.storage.policies.get(BUCKET, {"bindings": []})["bindings"]
            for member in binding["members"]
        ]
        held = {
            "services": sorted(self.run.services),
            "revisions": sorted(self.run.revisions),
            "apis": sorted(self.gateway.apis),
            "configs": sorted(self.gateway.configs),
            "gateways": sorted(self.gateway.gateways),
            "keys": [key.name for key in self.keys.live_keys()],
            "compute": sorted(self.compute.resources),
            "policies": sorted(self.compute.policies),
            "accounts": self.iam.emails(PROJECT),
            "objects": sorted(self.storage.objects),
            "readers": readers,
        }
        return {kind: names for kind, names in held.items() if names}

    def pause(self) -> None:
        """Hold every call to every fake until `resume` (Google slow to answer, or a network stall)."""
        for fake in self.all():
            fake.gate.clear()

    def resume(self) -> None:
        for fake in self.all():
            fake.gate.set()

    def reset(self) -> None:
        self.project.reset()
        self.project.clock = time.time
        for fake in self.all():
            fake.reset()

    def clear_calls(self) -> None:
        for fake in self.all():
            fake.clear_calls()


def start_fakes() -> Fakes:
    """Every fake, started, holding a project set up for the runtime (the bucket, the gateway account)."""
    gateway = ApiGatewayFake().start()
    fakes = Fakes(
        run=CloudRunFake().start(),
        storage=StorageFake((BUCKET,)).start(),
        keys=ApiKeysFake().start(),
        gateway=gateway,
        usage=ServiceUsageFake(known=gateway.managed_services).start(),
        compute=ComputeFake().start(),
        iam=IamAdminFake(setup=(GATEWAY_SA,)).start(),
        projects=ResourceManagerFake().start(),
        logging=CloudLoggingFake(PROJECT).start(),
        monitoring=CloudMonitoringFake(PROJECT).start(),
        project=FakeProject(),
    )
    for fake in fakes.all():
        fake.project = fakes.project
    return fakes


@pytest.fixture(scope="session")
def fake_servers():
    servers = start_fakes()
    yield servers
    for fake in servers.all():
        fake.stop()


@pytest.fixture
def fakes(fake_servers, monkeypatch) -> Fakes:
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    fake_servers.reset()
    return fake_servers


@pytest.fixture(scope="session")
def fake_kubernetes_server(tmp_path_factory):
    server = KubernetesApiFake(namespace="models").start()
    kubeconfig = write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", server.endpoint, "models")
    yield FakeKubernetes(server, kubeconfig)
    server.stop()


@pytest.fixture
def fake_kubernetes(fake_kubernetes_server) -> Iterator[FakeKubernetes]:
    """The fake Kubernetes API server, emptied but for its namespace (`.namespace`), with its
    `.kubeconfig` for `kubernetes.config.load_kube_config(config_file=...)`."""
    fake_kubernetes_server.server.reset()
    yield fake_kubernetes_server
    fake_kubernetes_server.run_pods(None)  # stops what the test had running


def settings_values(fakes: Fakes) -> dict:
    return {
        "GCP_PROJECT": PROJECT,
        "GCP_SERVING_IMAGE": "us-docker.pkg.dev/portal-test/portal/serving:1.0",
        "GCP_ARTIFACT_BUCKET": BUCKET,
        "GCP_GATEWAY_SERVICE_ACCOUNT": GATEWAY_SA,
        "GCP_LB_DOMAIN": "models.example.com",
        "GCP_SERVICE_ACCOUNT_TEMPLATE": "ep-{endpoint}@{project}.iam.gserviceaccount.com",
        "GCP_GATEWAY_REGION": "us-central1",
        "GCP_API_ENDPOINT_OVERRIDES": fakes.overrides(),
        "GCP_CALL_TIMEOUT_SECONDS": 10.0,
        "GCP_RETRY_ATTEMPTS": 3,
        "GCP_RETRY_INITIAL_SECONDS": 1.0,
        "GCP_RATE_LIMIT_WAIT_SECONDS": 30.0,
        "GCP_POLL_INTERVAL_SECONDS": 2.0,
        "GCP_OPERATION_WAIT_SECONDS": 10.0,
        "GCP_OPERATION_DEADLINE_SECONDS": 1800.0,
        "GCP_ARMOR_PRIORITY_START": 1000,
        "GCP_ARMOR_PRIORITY_END": 1999,
    }


class FakeClock:
    """Monotonic and wall clocks that move only when the runtime sleeps."""

    def __init__(self):
        self.now = 1_800_000_000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class ClockedGcpRuntime(GcpRuntime):
    """The gcp runtime on `clock` (set by the `on_the_clock` fixture): it waits by moving the
    clock the fakes read, so Google's minutes of propagation pass at once."""

    clock: FakeClock

    def __init__(self):
        clock = type(self).clock
        super().__init__(sleep=clock.sleep, clock=clock.monotonic, wall=clock.time)


@pytest.fixture
def on_the_clock(gcp_settings, fakes, clock, monkeypatch) -> FakeClock:
    """`get_runtime()` and the fakes share `clock`; nothing sleeps. Returns the clock."""
    from worker.runtimes import get_runtime

    monkeypatch.setattr(ClockedGcpRuntime, "clock", clock, raising=False)
    fakes.project.clock = clock.time
    gcp_settings.RUNTIME = "tests.fakes.fixtures.ClockedGcpRuntime"
    get_runtime.cache_clear()
    return clock


@pytest.fixture
def gcp_settings(settings, fakes):
    from worker.runtimes import get_runtime

    for name, value in settings_values(fakes).items():
        setattr(settings, name, value)
    settings.RUNTIME = "gcp"
    get_runtime.cache_clear()
    yield settings
    get_runtime.cache_clear()


@pytest.fixture
def gcp(gcp_settings, clock):
    from worker.runtimes.gcp.config import GcpConfig
    from worker.runtimes.gcp.runtime import GcpRuntime

    return GcpRuntime(GcpConfig.from_settings(), sleep=clock.sleep, clock=clock.monotonic, wall=clock.time)


ARTIFACT = b"skops-bytes-of-a-small-model" * 10


@pytest.fixture
def artifact(tmp_path):
    import hashlib

    path = tmp_path / "model.skops"
    path.write_bytes(ARTIFACT)
    return path, hashlib.sha256(ARTIFACT).hexdigest()


def make_spec(
    artifact,
    *,
    endpoint: str = "iris-prod",
    deployment_id: int = 1,
    mode: str = "api_key",
    traffic: int = 100,
    previous: dict | None = None,
    cidrs: tuple = (),
    **resources,
):
    """A DeploySpec like the portal builds, for a small model file `artifact` = (path, sha256)."""
    from worker.runtimes.base import AccessPolicy, DeploySpec, ModelSpec, Resources

    path, sha = artifact
    return DeploySpec(
        endpoint=endpoint,
        deployment_id=deployment_id,
        model=ModelSpec(
            name="iris",
            version=1,
            artifact_path=str(path),
            sha256=sha,
            format="skops",
            input_schema=({"name": "sepal_length", "type": "number"},),
            classes=(0, 1, 2),
            label_map={"0": "setosa"},
        ),
        resources=Resources(**resources),
        access=AccessPolicy(mode=mode, cidrs=cidrs),
        traffic_percent=traffic,
        previous=previous or {},
    )


def run_steps(runtime, spec, resources: dict | None = None, *, only: tuple = ()) -> dict:
    """Run a deploy's steps in order like the portal does, merging what each returns."""
    resources = dict(resources or {})
    for step in runtime.deploy_steps(spec):
        if only and step.name not in only:
            continue
        resources.update(step.run(resources).resources)
    return resources
