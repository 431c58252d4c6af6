"""The kubernetes runtime's deploy steps: the artifact on the shared volume, then the endpoint's
objects (`manifests`) written by name, then the rollout followed (`rollout`).

    for step in DeploySteps(kube, spec).all():
        resources.update(step.run(resources).resources)

Each step may run again and finds what its earlier run wrote: an object already as it should be is
left alone, and the rollout is followed from the Deployment's own status.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from worker.runtimes.artifacts import artifact_name, place_artifact
from worker.runtimes.base import Change, DeploySpec, PermanentError, Step, StepResult
from worker.runtimes.kubernetes import manifests, rollout
from worker.runtimes.kubernetes.api import Kube, Manifest, merged
from worker.runtimes.resources import DeploymentResources


class DeploySteps:
    """The steps of one deploy of `spec`; each may run again and finds what its earlier run made."""

    def __init__(self, kube: Kube, spec: DeploySpec):
        self.kube = kube
        self.cfg = kube.cfg
        self.spec = spec
        self.revision = manifests.served_revision(spec)
        self.name = manifests.check_name(spec.endpoint)

    def all(self) -> list[Step]:
        return [
            Step(
                "artifact", "Copy the model artifact to the shared volume", self.artifact, self.plan_artifact
            ),
            Step("access", "Write the access Secret", self.access, self.plan_of(self.secret)),
            Step(
                "deployment",
                f"Roll the Deployment out to {self.revision}",
                self.deployment,
                self.plan_deployment,
            ),
            Step("service", "Write the Service", self.service, self.plan_of(self.service_manifest)),
            Step("autoscaler", "Write the HorizontalPodAutoscaler", self.autoscaler, self.plan_of(self.hpa)),
            Step("rollout", f"Wait for {self.revision} to be ready", self.rollout),
        ]

    # artifact ------------------------------------------------------------------------------
    def artifact(self, resources: DeploymentResources) -> StepResult:
        # Checked before anything is made (the service refuses it already when it is asked).
        if refusal := manifests.min_replicas_refusal(self.cfg, self.spec.resources.min_instances):
            raise PermanentError(refusal)
        return StepResult(place_artifact(self.spec.model, Path(self.cfg.artifact_dir)))

    def plan_artifact(self) -> list[Change]:
        name = artifact_name(self.spec.model)
        if (Path(self.cfg.artifact_dir) / name).exists():
            return [Change("artifact", "none", f"{name} is already on the volume")]
        return [Change("artifact", "create", f"copy {name} to {self.cfg.artifact_dir}, verify its sha256")]

    # the objects ---------------------------------------------------------------------------
    def secret(self) -> Manifest:
        return manifests.access_secret(self.cfg, self.spec.endpoint, self.spec.access)

    def service_manifest(self) -> Manifest:
        return manifests.service(self.cfg, self.spec.endpoint)

    def hpa(self) -> Manifest:
        return manifests.autoscaler(self.cfg, self.spec.endpoint, self.spec.resources)

    def _applied(self, manifest: Manifest) -> str:
        _, done = self.kube.apply(manifest)
        return f"{manifest['kind']} {manifest['metadata']['name']} {done}"

    def access(self, resources: DeploymentResources) -> StepResult:
        return StepResult(self._applied(self.secret()))

    def service(self, resources: DeploymentResources) -> StepResult:
        return StepResult(self._applied(self.service_manifest()), {"url": self.cfg.url_for(self.name)})

    def autoscaler(self, resources: DeploymentResources) -> StepResult:
        return StepResult(self._applied(self.hpa()))

    def plan_of(self, build: Callable[[], Manifest]) -> Callable[[], list[Change]]:
        def plan() -> list[Change]:
            manifest = build()
            kind, name = manifest["kind"], manifest["metadata"]["name"]
            step = {"Secret": "access", "Service": "service", "HorizontalPodAutoscaler": "autoscaler"}[kind]
            current = self.kube.read(kind, name)
            if current is None:
                return [Change(step, "create", f"create {kind} {name}")]
            if merged(manifest, current) == current:
                return [Change(step, "none", f"{kind} {name} is as it should be")]
            return [Change(step, "update", f"update {kind} {name}")]

        return plan

    # deployment ----------------------------------------------------------------------------
    def wanted(self, current: Manifest | None) -> Manifest | None:
        """The Deployment serving this revision, from the one there (None: as it should be)."""
        wanted = manifests.deployment(self.cfg, self.spec, self.revision)
        replicas = (current or {}).get("spec", {}).get("replicas", 0)
        # A deploy serves, stopped or not; the autoscaler's count is kept.
        wanted["spec"]["replicas"] = max(replicas, 1, self.spec.resources.min_instances)
        serving = rollout.template_revision(current) if current else None
        if current is not None and serving != self.revision:
            annotations = wanted["metadata"]["annotations"]
            annotations[manifests.PREVIOUS_ANNOTATION] = serving or ""
        if current is None:
            return wanted
        result = merged(wanted, current)
        return None if result == current else result

    def deployment(self, resources: DeploymentResources) -> StepResult:
        serving: dict[str, str | None] = {}

        def change(current: Manifest | None) -> Manifest | None:
            serving["before"] = rollout.template_revision(current) if current else None
            return self.wanted(current)

        self.kube.write(manifests.deployment(self.cfg, self.spec, self.revision), change)
        previous = serving["before"]
        found: DeploymentResources = {"revision": self.revision, "rollout_started": self.kube.wall()}
        if previous != self.revision:
            found["previous_revision"] = previous
        return StepResult(f"Deployment {self.name} rolls out {self.revision}", found)

    def plan_deployment(self) -> list[Change]:
        current = self.kube.read("Deployment", self.name)
        if current is None:
            return [Change("deployment", "create", f"create Deployment {self.name} serving {self.revision}")]
        if self.wanted(current) is None:
            return [Change("deployment", "none", f"Deployment {self.name} already serves {self.revision}")]
        serving = rollout.template_revision(current)
        return [
            Change("deployment", "update", f"roll Deployment {self.name} from {serving} to {self.revision}")
        ]

    def rollout(self, resources: DeploymentResources) -> StepResult:
        started = resources.get("rollout_started", self.kube.wall())
        rollout.wait_rollout(self.kube, self.spec.endpoint, self.revision, started)
        return StepResult(f"{self.revision} is ready at {self.cfg.url_for(self.name)}")
