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

The deploy steps are in `worker.runtimes.kubernetes.steps`, stop, start and delete in
`worker.runtimes.kubernetes.lifecycle`, the rollout's following and undo in `rollout`.

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

from django.conf import settings

from worker.runtimes.base import (
    AccessPolicy,
    DeploySpec,
    IssuedKey,
    KeySpec,
    PermanentError,
    Runtime,
    Step,
    TeardownSpec,
    run_steps,
)
from worker.runtimes.kubernetes import logs, manifests
from worker.runtimes.kubernetes.api import Kube
from worker.runtimes.kubernetes.config import KubernetesConfig
from worker.runtimes.kubernetes.lifecycle import TeardownSteps, scaling_steps
from worker.runtimes.kubernetes.steps import DeploySteps
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
        "identity": "the serving pods, against the issuer's published keys (the pods must reach them)",
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
        serves on the same URL (see `worker.runtimes.kubernetes.lifecycle`)."""
        return scaling_steps(self.kube, spec, replicas=0)

    def start_steps(self, spec: DeploySpec) -> list[Step]:
        """Scale the Deployment back to the endpoint's minimum (at least one pod), and wait for it."""
        return scaling_steps(self.kube, spec, replicas=max(1, spec.resources.min_instances))

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
