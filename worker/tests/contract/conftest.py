"""The runtimes under contract: `harness` is each runtime with the means to look at what it did.

The local runtime runs real serving processes on loopback; the GCP runtime runs the real Google
clients against the fake Google servers (tests/fakes); the kubernetes runtime the official client
against the fake Kubernetes API server (tests/fakes/kubernetes_api). A harness answers the questions the
contract asks in each runtime's own terms: which revision is live, which revisions run, whether
a key still opens the endpoint.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest

from endpoints.demo import IRIS_FEATURES, IRIS_LABELS
from endpoints.sealing import key_hash
from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import PROJECT
from worker.runtimes.base import AccessPolicy, DeploySpec, ModelSpec, Pending, Resources

_names = itertools.count(1)


def kubernetes_values(fake, tmp_path: Path) -> dict:
    """The KUBERNETES_* settings for the fake API server (`fake_kubernetes`)."""
    return {
        "KUBERNETES_KUBECONFIG": fake.kubeconfig,
        "KUBERNETES_NAMESPACE": fake.namespace,
        "KUBERNETES_IMAGE": "registry.example/model-serving:1",
        "KUBERNETES_ARTIFACT_CLAIM": "model-artifacts",
        "KUBERNETES_ARTIFACT_DIR": str(tmp_path / "volume"),
    }


class Harness:
    name = ""
    resources = Resources()

    def __init__(self, runtime, endpoint: str, model: ModelSpec):
        self.runtime = runtime
        self.endpoint = endpoint
        self.model = model

    def spec(self, deployment_id: int, *, access=None, previous=None, model=None) -> DeploySpec:
        return DeploySpec(
            endpoint=self.endpoint,
            deployment_id=deployment_id,
            model=model or self.model,
            resources=self.resources,
            access=access or AccessPolicy(mode="api_key"),
            previous=previous or {},
        )

    def deploy(self, spec: DeploySpec, resources: dict | None = None) -> dict:
        return self.run(self.runtime.deploy_steps(spec), resources)

    def run(self, steps, resources: dict | None = None) -> dict:
        """Run steps as the portal's task does: a step still waiting on the cloud runs again."""
        resources = dict(resources or {})
        for step in steps:
            for _ in range(20):
                try:
                    resources.update(step.run(resources).resources)
                    break
                except Pending:
                    continue
            else:
                raise AssertionError(f"{step.name} never finished")
        return resources

    def fresh_runtime(self):
        """The same runtime as another worker process would build it."""
        return type(self.runtime)()

    def serves(self) -> bool:
        """Whether the endpoint takes requests at all."""
        raise NotImplementedError

    def leftovers(self) -> dict[str, list]:
        """What the runtime still holds for the endpoint, by kind (empty once it is deleted)."""
        raise NotImplementedError

    def live_revision(self) -> str | None:
        raise NotImplementedError

    def running_revisions(self) -> list[str]:
        raise NotImplementedError

    def key_opens(self, secret: str) -> bool:
        raise NotImplementedError


class LocalHarness(Harness):
    name = "local"

    @property
    def _dir(self):
        return self.runtime.dir.endpoint(self.endpoint)

    def live_revision(self):
        return self._dir.current()

    def running_revisions(self):
        from worker.runtimes.local import processes

        return [rev for rev in self._dir.revisions() if processes.read_pid_file(self._dir.pid_file(rev))]

    def serves(self):
        return bool(self.running_revisions())

    def leftovers(self):
        artifact = self.runtime.dir.artifact(self.model.sha256, self.model.format)
        held = {
            "files": sorted(path.name for path in self._dir.path.iterdir())
            if self._dir.path.exists()
            else [],
            "processes": self.running_revisions(),
            "artifacts": [artifact.name] if artifact.exists() else [],
        }
        return {kind: names for kind, names in held.items() if names}

    def key_opens(self, secret):
        import json

        document = json.loads(self._dir.access_file.read_text())
        return any(key["hash"] == key_hash(secret) and not key["revoked"] for key in document["keys"])


class GcpHarness(Harness):
    name = "gcp"

    def __init__(self, runtime, endpoint, model, fakes, make_runtime):
        super().__init__(runtime, endpoint, model)
        self.fakes = fakes
        self.make_runtime = make_runtime

    def fresh_runtime(self):
        return self.make_runtime()

    @property
    def _service(self):
        return f"projects/{PROJECT}/locations/us-central1/services/{self.endpoint}"

    def live_revision(self):
        if self._service not in self.fakes.run.services:
            return None
        statuses = self.fakes.run.service(self._service).traffic_statuses
        serving = [status.revision for status in statuses if status.percent == 100]
        return serving[0] if serving else None

    def running_revisions(self):
        if not self.serves():
            return []
        return [status.revision for status in self.fakes.run.service(self._service).traffic_statuses]

    def serves(self):
        from google.cloud import run_v2

        if self._service not in self.fakes.run.services:
            return False
        scaling = self.fakes.run.service(self._service).scaling
        return not (
            scaling.scaling_mode == run_v2.ServiceScaling.ScalingMode.MANUAL
            and scaling.manual_instance_count == 0
        )

    def leftovers(self):
        return self.fakes.held()

    def key_opens(self, secret):
        return any(self.fakes.keys.strings[key.name] == secret for key in self.fakes.keys.live_keys())


class KubernetesHarness(Harness):
    """The real Kubernetes client on the fake API server: what the runtime wrote, read back from it."""

    name = "kubernetes"
    resources = Resources(min_instances=1)  # an autoscaler keeps one pod at least
    KINDS = ("Deployment", "ReplicaSet", "Pod", "Service", "HorizontalPodAutoscaler", "Secret")

    def __init__(self, runtime, endpoint, model, fake, make_runtime):
        super().__init__(runtime, endpoint, model)
        self.fake = fake
        self.make_runtime = make_runtime

    def fresh_runtime(self):
        return self.make_runtime()

    def _ours(self, kind: str) -> list[dict]:
        from worker.runtimes.kubernetes.manifests import ENDPOINT_LABEL

        return [
            item
            for item in self.fake.list(kind)
            if (item["metadata"].get("labels") or {}).get(ENDPOINT_LABEL) == self.endpoint
        ]

    def live_revision(self):
        from worker.runtimes.kubernetes.rollout import template_revision

        deployment = self.fake.get("Deployment", self.endpoint)
        return template_revision(deployment) if deployment else None

    def running_revisions(self):
        from worker.runtimes.kubernetes.rollout import template_revision

        return sorted(
            template_revision(replica_set)
            for replica_set in self._ours("ReplicaSet")
            if replica_set["spec"].get("replicas") or (replica_set.get("status") or {}).get("replicas")
        )

    def serves(self):
        deployment = self.fake.get("Deployment", self.endpoint)
        return bool(deployment and deployment["spec"].get("replicas"))

    def leftovers(self):
        held = {kind: sorted(item["metadata"]["name"] for item in self._ours(kind)) for kind in self.KINDS}
        artifacts = Path(self.runtime.cfg.artifact_dir)
        held["artifacts"] = sorted(path.name for path in artifacts.iterdir()) if artifacts.exists() else []
        return {kind: names for kind, names in held.items() if names}

    def key_opens(self, secret):
        from worker.runtimes.kubernetes.manifests import policy_of, secret_name

        document = policy_of(self.fake.get("Secret", secret_name(self.endpoint)))
        return any(key["hash"] == key_hash(secret) and not key["revoked"] for key in document["keys"])


@pytest.fixture
def iris_model(iris_bytes, tmp_path) -> ModelSpec:
    path = tmp_path / "iris.skops"
    path.write_bytes(iris_bytes)
    return ModelSpec(
        name="iris",
        version=1,
        artifact_path=str(path),
        sha256=hashlib.sha256(iris_bytes).hexdigest(),
        format="skops",
        input_schema=tuple({"name": name, "type": "number"} for name in IRIS_FEATURES),
        classes=(0, 1, 2),
        label_map=IRIS_LABELS,
    )


@pytest.fixture(params=["local", "gcp", "kubernetes"])
def harness(request, settings, iris_model, tmp_path):
    endpoint = f"contract{next(_names)}"
    if request.param == "kubernetes":
        fake = request.getfixturevalue("fake_kubernetes")
        clock = request.getfixturevalue("clock")

        def make_kubernetes_runtime():
            from worker.runtimes.kubernetes.config import KubernetesConfig
            from worker.runtimes.kubernetes.runtime import KubernetesRuntime

            config = KubernetesConfig.from_values(kubernetes_values(fake, tmp_path))
            return KubernetesRuntime(config, sleep=clock.sleep, clock=clock.monotonic, wall=clock.time)

        yield KubernetesHarness(
            make_kubernetes_runtime(), endpoint, iris_model, fake, make_kubernetes_runtime
        )
        return
    if request.param == "local":
        from tests.fixtures.worker import session_ports, stop_serving_processes
        from worker.runtimes.local import LocalRuntime

        settings.LOCAL_RUNTIME_PORT_MIN, settings.LOCAL_RUNTIME_PORT_MAX = session_ports()
        yield LocalHarness(LocalRuntime(), endpoint, iris_model)
        stop_serving_processes(Path(settings.LOCAL_RUNTIME_DIR))
        return
    fakes = request.getfixturevalue("fakes")
    request.getfixturevalue("gcp_settings")
    clock = request.getfixturevalue("clock")

    def make_runtime():
        from worker.runtimes.gcp.config import GcpConfig
        from worker.runtimes.gcp.runtime import GcpRuntime

        return GcpRuntime(
            GcpConfig.from_settings(), sleep=clock.sleep, clock=clock.monotonic, wall=clock.time
        )

    yield GcpHarness(make_runtime(), endpoint, iris_model, fakes, make_runtime)
