"""The kubernetes runtime's stop, start and delete steps.

Stop scales the Deployment to no pod and waits for its pods to go; the Service, the autoscaler
and the access Secret stay, so start (the endpoint's minimum, at least one pod) serves on the same
URL. The autoscaler stands aside while its target has no replica (what Kubernetes documents as
implicit maintenance-mode deactivation) and takes over again once it has.

Delete removes the autoscaler, the Service, the Deployment (its ReplicaSets and pods go with it,
in the background) and the Secret, waits for the pods to go, then deletes the artifacts no other
endpoint uses. An object already gone counts as deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from worker.runtimes.artifacts import artifact_name
from worker.runtimes.base import Change, DeploySpec, PermanentError, Step, StepResult, TeardownSpec
from worker.runtimes.kubernetes import manifests, rollout
from worker.runtimes.kubernetes.api import Kube, Manifest
from worker.runtimes.resources import DeploymentResources


def scaling_steps(kube: Kube, spec: DeploySpec, *, replicas: int) -> list[Step]:
    """Stop (`replicas` 0) or start the endpoint's Deployment: the write, then its wait."""
    name = manifests.check_name(spec.endpoint)
    step = "scale_down" if replicas == 0 else "scale_up"

    def scale(resources: DeploymentResources) -> StepResult:
        def change(current: Manifest | None) -> Manifest | None:
            if current is None:
                raise PermanentError(f"The Deployment {name} is gone: deploy the endpoint again.")
            if current["spec"].get("replicas") == replicas:
                return None
            current["spec"]["replicas"] = replicas
            return current

        kube.write({"kind": "Deployment", "metadata": {"name": name}}, change)
        return StepResult(f"{name} scaled to {replicas} pod(s)", {"rollout_started": kube.wall()})

    def plan() -> list[Change]:
        current = kube.read("Deployment", name)
        if current is None:
            return [Change(step, "error", f"the Deployment {name} does not exist")]
        if current["spec"].get("replicas") == replicas:
            return [Change(step, "none", f"{name} already has {replicas} replica(s)")]
        return [Change(step, "update", f"scale {name} to {replicas} replica(s)")]

    def stopped(resources: DeploymentResources) -> StepResult:
        def read() -> bool | None:
            current = kube.read("Deployment", name)
            if current is None:
                return True
            status = current.get("status") or {}
            seen = status.get("observedGeneration", 0) >= current["metadata"].get("generation", 0)
            return True if seen and not status.get("replicas") else None

        started = resources.get("rollout_started", kube.wall())
        rollout.wait(kube, read, what=f"Stop {name}", started=started, deadline=kube.cfg.progress_deadline)
        return StepResult(f"{name} runs no pod; its Service and URL are kept")

    def ready(resources: DeploymentResources) -> StepResult:
        revision = rollout.wait_rollout(kube, name, None, resources.get("rollout_started", kube.wall()))
        return StepResult(f"{revision} is ready again at {kube.cfg.url_for(name)}")

    if replicas == 0:
        return [
            Step(step, "Scale the Deployment to no pod", scale, plan),
            Step("pods_stopped", "Wait for the pods to stop", stopped),
        ]
    return [
        Step(step, "Scale the Deployment up", scale, plan),
        Step("pods_ready", "Wait for the pods to be ready", ready),
    ]


class TeardownSteps:
    """The steps of one endpoint's delete; an object already gone counts as deleted."""

    KINDS = (
        ("autoscaler", "HorizontalPodAutoscaler"),
        ("service", "Service"),
        ("deployment", "Deployment"),
        ("access", "Secret"),
    )

    def __init__(self, kube: Kube, spec: TeardownSpec):
        self.kube = kube
        self.cfg = kube.cfg
        self.spec = spec
        self.name = manifests.check_name(spec.endpoint)

    def all(self) -> list[Step]:
        steps = [
            Step(f"delete_{step}", f"Delete the {kind}", self._deleter(kind), self._delete_plan(step, kind))
            for step, kind in self.KINDS
        ]
        return steps + [
            Step("pods_gone", "Wait for the endpoint's pods to go", self.pods_gone),
            Step("delete_artifacts", "Delete the unused artifacts", self.artifacts, self.plan_artifacts),
        ]

    def _object_name(self, kind: str) -> str:
        return manifests.secret_name(self.name) if kind == "Secret" else self.name

    def _deleter(self, kind: str) -> Callable[[DeploymentResources], StepResult]:
        def run(resources: DeploymentResources) -> StepResult:
            name = self._object_name(kind)
            deleted = self.kube.delete(kind, name)
            found: DeploymentResources = {"deleted_at": self.kube.wall()} if kind == "Deployment" else {}
            return StepResult(
                f"Deleted {kind} {name}" if deleted else f"{kind} {name} was already gone", found
            )

        return run

    def _delete_plan(self, step: str, kind: str) -> Callable[[], list[Change]]:
        def plan() -> list[Change]:
            name = self._object_name(kind)
            if self.kube.read(kind, name) is None:
                return [Change(f"delete_{step}", "none", f"{kind} {name} is gone")]
            return [Change(f"delete_{step}", "delete", f"delete {kind} {name}")]

        return plan

    def pods_gone(self, resources: DeploymentResources) -> StepResult:
        """The Deployment's ReplicaSets and pods go with it (garbage collection, in the background)."""
        selector = manifests.selector(self.name)

        def read() -> bool | None:
            left = self.kube.list("ReplicaSet", selector) + self.kube.list("Pod", selector)
            return None if left else True

        started = resources.get("deleted_at", self.kube.wall())
        what = f"Remove the pods of {self.name}"
        rollout.wait(self.kube, read, what=what, started=started, deadline=self.cfg.progress_deadline)
        return StepResult(f"No pod of {self.name} is left")

    def artifacts(self, resources: DeploymentResources) -> StepResult:
        folder = Path(self.cfg.artifact_dir)
        deleted = []
        for model in self.spec.artifacts:
            path = folder / artifact_name(model)
            if path.exists():
                path.unlink(missing_ok=True)
                deleted.append(path.name)
        return StepResult(f"Deleted {', '.join(deleted)}" if deleted else "No artifact was left")

    def plan_artifacts(self) -> list[Change]:
        folder = Path(self.cfg.artifact_dir)
        return [
            Change("delete_artifacts", "delete", f"delete {artifact_name(model)} from the volume")
            for model in self.spec.artifacts
            if (folder / artifact_name(model)).exists()
        ] or [Change("delete_artifacts", "none", "no artifact left")]
