"""The Kubernetes API as the runtime uses it: objects of a few kinds, read and written as dicts.

The official client is configured from KUBERNETES_KUBECONFIG (and KUBERNETES_CONTEXT) or, when that
is empty, from the pod's in-cluster service account, once per runtime and lazily (after Celery
forks). Every call carries KUBERNETES_CALL_TIMEOUT_SECONDS and reads the answer as JSON, so the
runtime compares and writes the same dicts `manifests` builds. A write is create-or-replace by
name: read, then create (absent) or replace carrying the resourceVersion read, so a write that
raced another is refused (409 Conflict) and done again from a fresh read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, config

from worker.runtimes.base import PermanentError, RuntimeFailure
from worker.runtimes.kubernetes import errors
from worker.runtimes.kubernetes.config import KubernetesConfig

Manifest = dict[str, Any]

#: kind -> (the client's API class, the snake-case name in its method names)
KINDS: dict[str, tuple[Callable[[client.ApiClient], Any], str]] = {
    "Deployment": (client.AppsV1Api, "deployment"),
    "ReplicaSet": (client.AppsV1Api, "replica_set"),
    "Pod": (client.CoreV1Api, "pod"),
    "Service": (client.CoreV1Api, "service"),
    "Secret": (client.CoreV1Api, "secret"),
    "HorizontalPodAutoscaler": (client.AutoscalingV2Api, "horizontal_pod_autoscaler"),
}
#: How often a write that raced another is done again from a fresh read, in one call.
CONFLICT_ATTEMPTS = 3


class Kube:
    """One namespace of one cluster, as KubernetesConfig says."""

    def __init__(
        self,
        cfg: KubernetesConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.cfg = cfg
        self.sleep, self.clock, self.wall = sleep, clock, wall
        self._client: client.ApiClient | None = None

    @property
    def namespace(self) -> str:
        return self.cfg.namespace

    def api_client(self) -> client.ApiClient:
        if self._client is None:
            configuration = client.Configuration()
            try:
                if self.cfg.kubeconfig:
                    config.load_kube_config(
                        config_file=self.cfg.kubeconfig,
                        context=self.cfg.context or None,
                        client_configuration=configuration,
                        persist_config=False,
                    )
                else:
                    config.load_incluster_config(client_configuration=configuration)
            except Exception as exc:
                raise errors.translate(exc, "Connect to Kubernetes") from exc
            self._client = client.ApiClient(configuration)
        return self._client

    def _method(self, verb: str, kind: str) -> Callable[..., Any]:
        api, snake = KINDS[kind]
        return getattr(api(self.api_client()), f"{verb}_namespaced_{snake}")

    def call(
        self, verb: str, kind: str, *args: Any, what: str, missing_ok: bool = False, **kwargs: Any
    ) -> Any:
        """`<verb>_namespaced_<kind>` in the namespace, its answer as JSON (None for a 404 when
        `missing_ok`); failures as the runtime's errors, naming `what`."""
        data = self._send(self._method(verb, kind), *args, what=what, missing_ok=missing_ok, **kwargs)
        if data is None:
            return None
        return json.loads(data) if data else {}

    def log(self, pod: str, *, what: str, **options: Any) -> str:
        """The pod's log as the API server gives it ("" for a pod gone meanwhile, or whose
        container has not started: the API server refuses that with 400 "is waiting to start")."""
        method = client.CoreV1Api(self.api_client()).read_namespaced_pod_log
        try:
            data = self._send(method, pod, what=what, missing_ok=True, **options)
        except PermanentError as exc:
            refusal = exc.__cause__
            if isinstance(refusal, client.ApiException) and refusal.status == 400:
                if "is waiting to start" in errors.status_of(refusal).get("message", ""):
                    return ""
            raise
        return (data or b"").decode("utf-8", errors="replace")

    def _send(
        self, method: Callable[..., Any], *args: Any, what: str, missing_ok: bool, **kwargs: Any
    ) -> bytes | None:
        try:
            answer = method(
                *args,
                namespace=self.namespace,
                _preload_content=False,
                _request_timeout=self.cfg.call_timeout,
                **kwargs,
            )
        except client.ApiException as exc:
            if missing_ok and exc.status == 404:
                return None
            raise errors.translate(exc, what) from exc
        except Exception as exc:
            raise errors.translate(exc, what) from exc
        return answer.data

    # --- objects -----------------------------------------------------------------------------

    def read(self, kind: str, name: str) -> Manifest | None:
        return self.call("read", kind, name, what=f"Read {kind} {name}", missing_ok=True)

    def list(self, kind: str, selector: dict[str, str]) -> list[Manifest]:
        labels = ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
        found = self.call("list", kind, what=f"List the {kind}s of {labels}", label_selector=labels)
        return list(found.get("items") or [])

    def delete(self, kind: str, name: str) -> bool:
        """Delete the object (its dependents go with it, in the background); False if it was gone."""
        gone = self.call(
            "delete",
            kind,
            name,
            what=f"Delete {kind} {name}",
            missing_ok=True,
            body={"propagationPolicy": "Background"},
        )
        return gone is not None

    def write(
        self, manifest: Manifest, change: Callable[[Manifest | None], Manifest | None]
    ) -> Manifest | None:
        """Create or replace one object: `change(current)` gives the object to write from the one
        read (None: absent), or None to leave it as it is (then the current one is returned).
        A write that raced another is done again from a fresh read: a replace refused for an old
        resourceVersion (409 Conflict) or of an object deleted meanwhile (404), a create of a name
        taken meanwhile (409 AlreadyExists)."""
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        for attempt in range(CONFLICT_ATTEMPTS):
            current = self.read(kind, name)
            wanted = change(current)
            if wanted is None:
                return current
            try:
                if current is None:
                    return self.call("create", kind, body=wanted, what=f"Create {kind} {name}")
                wanted["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                return self.call("replace", kind, name, body=wanted, what=f"Replace {kind} {name}")
            except RuntimeFailure as exc:
                refusal = exc.__cause__
                raced = isinstance(refusal, client.ApiException) and refusal.status in (404, 409)
                if not raced or attempt == CONFLICT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def apply(self, manifest: Manifest) -> tuple[Manifest, str]:
        """Make the object the one given (its spec and data, labels and annotations), keeping what
        the cluster set itself; returns it and what was done: created, updated or unchanged."""
        done = "unchanged"

        def change(current: Manifest | None) -> Manifest | None:
            nonlocal done
            if current is None:
                done = "created"
                return json.loads(json.dumps(manifest))
            wanted = merged(manifest, current)
            if wanted == current:
                return None
            done = "updated"
            return wanted

        written = self.write(manifest, change)
        assert written is not None
        return written, done


def merged(manifest: Manifest, current: Manifest) -> Manifest:
    """`current` with every field `manifest` gives set to its value: what the cluster added of
    its own (a Service's cluster IP, defaults, status) stays, so an unchanged object compares equal."""

    def merge(ours: Any, theirs: Any) -> Any:
        if isinstance(ours, dict) and isinstance(theirs, dict):
            return {**theirs, **{key: merge(value, theirs.get(key)) for key, value in ours.items()}}
        if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
            return [merge(a, b) for a, b in zip(ours, theirs, strict=True)]
        return ours

    result = merge(manifest, current)
    return json.loads(json.dumps(result))
