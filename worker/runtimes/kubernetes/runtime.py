"""The `kubernetes` runtime: each endpoint a Deployment, a Service, a HorizontalPodAutoscaler and
an access Secret in one namespace (see `manifests` for the objects).

    RUNTIME=kubernetes KUBERNETES_NAMESPACE=models KUBERNETES_IMAGE=... \\
    KUBERNETES_ARTIFACT_CLAIM=model-artifacts KUBERNETES_ARTIFACT_DIR=/mnt/model-artifacts

A deploy copies the verified artifact to the shared volume, writes the access Secret, then the
Deployment with the new revision's pod template (a new ReplicaSet, rolled out with maxUnavailable
0, so no request is refused), the Service and the autoscaler, and waits on the rollout. A revision
that never gets ready (ProgressDeadlineExceeded) fails the deploy with its pods' reasons, and the
previous revision's template is put back: it never stopped serving. A rollback writes the
template of the revision it goes back to, whose ReplicaSet Kubernetes still keeps.

Keys and the allowlist live in the access Secret, mounted as the serving access file: a change
reaches the running pods without a restart, once the kubelet refreshes the mounted Secret.
Canary shares are refused: two Deployments behind one Service split requests by pod count, not by
a percentage.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from django.conf import settings

from worker.runtimes.artifacts import artifact_name, place_artifact
from worker.runtimes.base import (
    AccessPolicy,
    Change,
    DeploySpec,
    IssuedKey,
    KeySpec,
    PermanentError,
    Runtime,
    Step,
    StepResult,
    TeardownSpec,
    run_steps,
)
from worker.runtimes.kubernetes import logs, manifests, rollout
from worker.runtimes.kubernetes.api import Kube, Manifest, merged
from worker.runtimes.kubernetes.config import KubernetesConfig
from worker.runtimes.logs import LogPage, LogQuery
from worker.runtimes.prometheus import PrometheusReader
from worker.runtimes.resources import DeploymentResources
from worker.runtimes.traffic import Traffic, check_window


class KubernetesRuntime(Runtime):
    name = "kubernetes"
    # Kubernetes splits a Service's requests by pod count: no exact share without a mesh.
    supports_canary = False
    enforcers = {
        "keys": "the serving pods, from the access Secret mounted in them",
        "addresses": "the serving pods, from the access Secret mounted in them",
    }
    ignored_settings = frozenset({"region", "concurrency", "timeout_seconds"})
    ignored_settings_reason = (
        "The kubernetes runtime runs in its cluster's namespace and sizes pods by CPU and memory "
        "between the minimum and maximum instances; it does not use this setting."
    )

    def __init__(
        self,
        config: KubernetesConfig | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.kube = Kube(config or KubernetesConfig.from_settings(), sleep=sleep, clock=clock, wall=wall)

    @property
    def cfg(self) -> KubernetesConfig:
        return self.kube.cfg

    def min_instances_refusal(self, min_instances: int) -> str | None:
        return manifests.min_replicas_refusal(self.cfg, min_instances)

    # --- deploy ------------------------------------------------------------------------------

    def deploy_steps(self, spec: DeploySpec) -> list[Step]:
        return DeploySteps(self.kube, spec).all()

    # --- access and keys ---------------------------------------------------------------------

    def apply_access(self, endpoint: str, access: AccessPolicy) -> None:
        """Rewrite the access Secret. The kubelet refreshes a mounted Secret on its own sync
        (about a minute by default), and serving re-reads the file when it changes: no restart."""
        self.kube.apply(manifests.access_secret(self.cfg, endpoint, access))

    def issue_key(self, spec: KeySpec) -> IssuedKey:
        # As on the local runtime: the Secret carries only the key's hash (written by apply_access).
        return IssuedKey(
            name=f"kubernetes:{spec.endpoint}:{spec.key_id}", secret="mep_" + secrets.token_urlsafe(32)
        )

    def revoke_key(self, endpoint: str, key_name: str) -> None:
        """Nothing to do here: the access Secret marks the key revoked (see `apply_access`)."""

    def restore_key(self, endpoint: str, key_name: str) -> None:
        """Nothing to do here either: the next `apply_access` writes the key as not revoked."""

    # --- stop, start, delete -----------------------------------------------------------------

    def stop_steps(self, spec: DeploySpec) -> list[Step]:
        """Scale the Deployment to no pod; the Service, autoscaler and Secret stay, so a start
        serves on the same URL. The autoscaler stands aside while its target has no replica (what
        Kubernetes documents as implicit maintenance-mode deactivation)."""
        return [
            Step(
                "scale_down",
                "Scale the Deployment to no pod",
                self._scaler(spec, 0),
                self._scale_plan(spec, 0),
            ),
            Step(
                "pods_stopped", "Wait for the pods to stop", lambda resources: self._stopped(spec, resources)
            ),
        ]

    def start_steps(self, spec: DeploySpec) -> list[Step]:
        """Scale the Deployment back to the endpoint's minimum (at least one pod), and wait for it."""
        replicas = max(1, spec.resources.min_instances)
        return [
            Step(
                "scale_up",
                "Scale the Deployment up",
                self._scaler(spec, replicas),
                self._scale_plan(spec, replicas),
            ),
            Step(
                "pods_ready", "Wait for the pods to be ready", lambda resources: self._ready(spec, resources)
            ),
        ]

    def _scaler(self, spec: DeploySpec, replicas: int) -> Callable[[DeploymentResources], StepResult]:
        name = manifests.check_name(spec.endpoint)

        def run(resources: DeploymentResources) -> StepResult:
            def change(current: Manifest | None) -> Manifest | None:
                if current is None:
                    raise PermanentError(f"The Deployment {name} is gone: deploy the endpoint again.")
                if current["spec"].get("replicas") == replicas:
                    return None
                current["spec"]["replicas"] = replicas
                return current

            self.kube.write({"kind": "Deployment", "metadata": {"name": name}}, change)
            return StepResult(f"{name} scaled to {replicas} pod(s)", {"rollout_started": self.kube.wall()})

        return run

    def _scale_plan(self, spec: DeploySpec, replicas: int) -> Callable[[], list[Change]]:
        step = "scale_down" if replicas == 0 else "scale_up"

        def plan() -> list[Change]:
            current = self.kube.read("Deployment", manifests.check_name(spec.endpoint))
            if current is None:
                return [Change(step, "error", f"the Deployment {spec.endpoint} does not exist")]
            if current["spec"].get("replicas") == replicas:
                return [Change(step, "none", f"{spec.endpoint} already has {replicas} replica(s)")]
            return [Change(step, "update", f"scale {spec.endpoint} to {replicas} replica(s)")]

        return plan

    def _stopped(self, spec: DeploySpec, resources: DeploymentResources) -> StepResult:
        name = manifests.check_name(spec.endpoint)

        def read() -> bool | None:
            current = self.kube.read("Deployment", name)
            if current is None:
                return True
            status = current.get("status") or {}
            seen = status.get("observedGeneration", 0) >= current["metadata"].get("generation", 0)
            return True if seen and not status.get("replicas") else None

        started = resources.get("rollout_started", self.kube.wall())
        rollout.wait(
            self.kube, read, what=f"Stop {name}", started=started, deadline=self.cfg.progress_deadline
        )
        return StepResult(f"{name} runs no pod; its Service and URL are kept")

    def _ready(self, spec: DeploySpec, resources: DeploymentResources) -> StepResult:
        revision = wait_rollout(
            self.kube, spec.endpoint, None, resources.get("rollout_started", self.kube.wall())
        )
        return StepResult(f"{revision} is ready again at {self.cfg.url_for(spec.endpoint)}")

    def delete_steps(self, spec: TeardownSpec) -> list[Step]:
        return TeardownSteps(self.kube, spec).all()

    def read_log(self, endpoint: str, live: DeploymentResources | None, query: LogQuery) -> LogPage:
        """The live revision's pods' logs, merged (see `worker.runtimes.kubernetes.logs`)."""
        revision = (live or {}).get("revision")
        if not revision:
            return LogPage(revision=None)
        return logs.read_log(self.kube, endpoint, revision, query)

    def traffic(
        self, endpoint: str, live: DeploymentResources | None, *, start: datetime, end: datetime, step: int
    ) -> Traffic:
        """From the Prometheus server at PROMETHEUS_URL, which scrapes the pods' /metrics (each
        metric labelled with the endpoint and revision); the cluster itself keeps none."""
        check_window(start, end, step)
        if not settings.PROMETHEUS_URL:
            raise PermanentError(
                "The kubernetes runtime reads traffic from Prometheus: set PROMETHEUS_URL to a Prometheus "
                "server that scrapes the serving pods' /metrics."
            )
        return PrometheusReader(settings.PROMETHEUS_URL).traffic(endpoint, start=start, end=end, step=step)

    def ensure_serving(self, spec: DeploySpec) -> bool:
        """The Deployment controller keeps the pods running by itself; a Deployment deleted from
        outside the portal is written again (with the Secret, Service and autoscaler) as the live
        deployment made it, and the controller brings its pods up."""
        if self.kube.read("Deployment", manifests.check_name(spec.endpoint)) is not None:
            return False
        steps = DeploySteps(self.kube, spec)
        run_steps([step for step in steps.all() if step.name != "rollout"])
        return True


def wait_rollout(kube: Kube, endpoint: str, revision: str | None, started: float) -> str:
    """Wait until the Deployment's rollout (of `revision`, or of whatever its template is) is done;
    returns the revision. On ProgressDeadlineExceeded the previous revision's template is put back
    and the deploy fails with the pods' reasons."""
    name = manifests.check_name(endpoint)
    deadline = kube.cfg.progress_deadline + rollout.DEADLINE_MARGIN_SECONDS

    def read() -> str | None:
        current = kube.read("Deployment", name)
        if current is None:
            raise PermanentError(f"The Deployment {name} was deleted during the rollout.")
        serving = rollout.template_revision(current)
        if revision and serving != revision:
            raise PermanentError(
                f"{revision} no longer is the Deployment's template ({serving} is): a later deploy or an "
                "undo replaced it."
            )
        verdict = rollout.state(current)
        if verdict == "failed":
            message = rollout.condition(current, "Progressing").get("message", "")
            raise _never_ready(kube, endpoint, serving or name, message, current)
        return serving or name if verdict == "done" else None

    try:
        return rollout.wait(
            kube, read, what=f"Roll out {revision or name}", started=started, deadline=deadline
        )
    except rollout.DeadlinePassed as exc:
        current = kube.read("Deployment", name)
        raise _never_ready(kube, endpoint, revision or name, str(exc), current) from None


def _never_ready(
    kube: Kube, endpoint: str, revision: str, message: str, current: Manifest | None
) -> PermanentError:
    reasons = rollout.pod_reasons(kube, endpoint, revision)
    previous = ((current or {}).get("metadata", {}).get("annotations") or {}).get(
        manifests.PREVIOUS_ANNOTATION
    )
    undone = rollout.undo(kube, endpoint, revision, previous)
    why = "; ".join(reasons) or "its pods gave no reason"
    return PermanentError(
        f"{revision} never became ready within {kube.cfg.progress_deadline} s (ProgressDeadlineExceeded"
        f"{': ' + message if message else ''}). Pods: {why}. {undone}"
    )


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
        before = self.kube.read("Deployment", self.name)
        previous = rollout.template_revision(before) if before else None
        written = self.kube.write(manifests.deployment(self.cfg, self.spec, self.revision), self.wanted)
        assert written is not None
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
        wait_rollout(self.kube, self.spec.endpoint, self.revision, started)
        return StepResult(f"{self.revision} is ready at {self.cfg.url_for(self.name)}")


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
