"""A fake Kubernetes API server that the official `kubernetes` client talks to over loopback HTTP.

    def test_it(fake_kubernetes):
        kubernetes.config.load_kube_config(config_file=fake_kubernetes.kubeconfig)
        apps = kubernetes.client.AppsV1Api()
        apps.create_namespaced_deployment(fake_kubernetes.namespace, {...})
        fake_kubernetes.get("Deployment", "web")["status"]

It serves namespaces, Secrets, Services, Pods and Events (core/v1), Deployments and ReplicaSets
(apps/v1) and HorizontalPodAutoscalers (autoscaling/v2), answers errors as the API server does
(`status.py`), validates what it is given (`validation.py`, `defaults.py`), patches as it does
(`patching.py`), and runs a Deployment controller, a kubelet and an HPA controller on every read
(`workloads.py`, `deployments.py`, `replicasets.py`, `kubelet.py`, `autoscaler.py`), on a clock of
the client's polls (`cluster.py`). Pods serve the log a test writes (`logs.py`), or, once a test
calls `run_pods`, run their command as local processes on loopback (`processes.py`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.fakes.kubernetes_api.kinds import BY_KIND
from tests.fakes.kubernetes_api.kubelet import FAILURES
from tests.fakes.kubernetes_api.logs import container_of
from tests.fakes.kubernetes_api.processes import Launch, LiveKubelet
from tests.fakes.kubernetes_api.server import TOKEN, KubernetesApiFake
from tests.fakes.kubernetes_api.status import transient

__all__ = ["FakeKubernetes", "KubernetesApiFake", "write_kubeconfig"]


def write_kubeconfig(path: Path, url: str, namespace: str) -> Path:
    """A kubeconfig for `url` with a token user, its context's namespace `namespace`."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "fake", "user": {"token": TOKEN}}],
        "contexts": [
            {"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}
        ],
        "current-context": "fake",
    }
    path.write_text(yaml.safe_dump(config))
    return path


class FakeKubernetes:
    """What a test holds: where the fake is, what it stores, and the levers on its cluster.

    `get` and `list` look at the stored objects without running the controllers (a test's look is
    not a client's poll).
    """

    def __init__(self, server: KubernetesApiFake, kubeconfig: Path):
        self.server = server
        self.cluster = server.cluster
        self.kubeconfig = str(kubeconfig)
        self.namespace = server.cluster.default_namespace
        self.url = server.endpoint

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict | None:
        """The stored object, or None."""
        scope = (namespace or self.namespace) if BY_KIND[kind].namespaced else ""
        with self.cluster.lock:
            obj = self.cluster.objects.get((kind, scope, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        scope = (namespace or self.namespace) if BY_KIND[kind].namespaced else None
        with self.cluster.lock:
            return [copy.deepcopy(obj) for obj in self.cluster.find(kind, scope)]

    def pods_fail(self, deployment: str, reason: str, namespace: str | None = None) -> None:
        """The next rollouts of `deployment` never get Ready: their pods report `reason`
        (ImagePullBackOff, ErrImagePull, CrashLoopBackOff or OOMKilled) as a kubelet would."""
        if reason not in FAILURES:
            raise ValueError(f"reason must be one of {', '.join(FAILURES)}, not {reason!r}")
        with self.cluster.lock:
            self.cluster.workloads.failing[(namespace or self.namespace, deployment)] = reason

    def pods_heal(self, deployment: str, namespace: str | None = None) -> None:
        """Rollouts of `deployment` from now on get Ready again (pods already failing keep failing)."""
        with self.cluster.lock:
            self.cluster.workloads.failing.pop((namespace or self.namespace, deployment), None)

    def write_log(
        self, pod: str, *lines: str, container: str | None = None, namespace: str | None = None
    ) -> None:
        """`pod`'s container (its only one, or `container`) writes `lines`, stamped with the cluster's
        clock: what the pod's log then serves."""
        with self.cluster.lock:
            found = self.cluster.objects.get(("Pod", namespace or self.namespace, pod))
            if found is None:
                raise KeyError(f"no pod {pod} in {namespace or self.namespace}")
            self.cluster.workloads.write_log(found["metadata"]["uid"], container_of(found, container), lines)

    def run_pods(self, launch: Launch | None, claims: dict[str, str] | None = None) -> None:
        """Run each pod's container as a local process from now on (processes.py): `launch` gives
        its command line and environment; `claims` the host directory of each volume claim. The
        processes take real time, so the cluster's clock becomes the wall clock (unless the test
        gave one). None stops every process and goes back to the poll model."""
        with self.cluster.lock:
            workloads = self.cluster.workloads
            if workloads.live is not None:
                workloads.live.stop_all()
            workloads.live = LiveKubelet(workloads, launch, claims or {}) if launch else None
            if launch and self.cluster.clock is None:
                self.cluster.clock = time.time
            elif not launch and self.cluster.clock is time.time:
                self.cluster.clock = None

    def pod_url(self, pod: str, namespace: str | None = None) -> str:
        """Where a running pod's process listens (its first containerPort, on loopback)."""
        with self.cluster.lock:
            found = self.cluster.objects.get(("Pod", namespace or self.namespace, pod))
            live = self.cluster.workloads.live
            if found is None or live is None or found["metadata"]["uid"] not in live.processes:
                raise KeyError(f"pod {pod} runs no process")
            return live.url(found["metadata"]["uid"])

    def service_url(self, service: str, namespace: str | None = None) -> str:
        """Where a Service answers on loopback, forwarding to its Ready live pods (proxy.py)."""
        with self.cluster.lock:
            live = self.cluster.workloads.live
            if live is None:
                raise KeyError("a Service forwards only to live pods: call run_pods first")
            return live.proxy.url(namespace or self.namespace, service)

    @property
    def ready_after(self) -> int:
        """How many reads of its Deployment a new pod takes to be Ready."""
        return self.cluster.workloads.ready_after

    @ready_after.setter
    def ready_after(self, polls: int) -> None:
        self.cluster.workloads.ready_after = polls

    @property
    def clock(self) -> Callable[[], float] | None:
        """The cluster's clock (seconds); None: it moves `seconds_per_poll` with each Deployment read."""
        return self.cluster.clock

    @clock.setter
    def clock(self, clock: Callable[[], float] | None) -> None:
        self.cluster.clock = clock

    @property
    def seconds_per_poll(self) -> float:
        return self.cluster.seconds_per_poll

    @seconds_per_poll.setter
    def seconds_per_poll(self, seconds: float) -> None:
        self.cluster.seconds_per_poll = seconds

    def fail_next(
        self,
        times: int = 1,
        reason: str = "ServiceUnavailable",
        *,
        route: str | None = None,
        after: bool = False,
    ) -> None:
        """Answer the next `times` calls (whose "METHOD /path" contains `route`, or any) with a
        Status of `reason` (ServiceUnavailable, TooManyRequests, InternalError or Timeout);
        `after=True` lets the call take effect first, as when an answer is lost."""
        self.server.fail_next(times, route=route, after=after, error=transient(reason))

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every call the fake answered, as (method, path)."""
        with self.server.lock:
            return [(call.request.method, call.request.path) for call in self.server.calls]

    @property
    def warnings(self) -> list[str]:
        """Every warning sent (unknown fields the API server dropped)."""
        return list(self.cluster.warnings)
