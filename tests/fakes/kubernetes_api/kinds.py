"""The resources the fake serves, each as the API server's discovery names it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    kind: str  # "Deployment"
    group: str  # "apps", "" for the core group
    version: str  # "v1"
    plural: str  # "deployments"
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def prefix(self) -> str:
        """The path the group's resources live under: /api/v1 or /apis/apps/v1."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


KINDS = (
    Kind("Namespace", "", "v1", "namespaces", namespaced=False),
    Kind("Secret", "", "v1", "secrets"),
    Kind("Service", "", "v1", "services"),
    Kind("Pod", "", "v1", "pods"),
    Kind("Event", "", "v1", "events"),
    Kind("Deployment", "apps", "v1", "deployments"),
    Kind("ReplicaSet", "apps", "v1", "replicasets"),
    Kind("HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers"),
)
BY_KIND = {kind.kind: kind for kind in KINDS}
BY_PATH = {(kind.prefix, kind.plural): kind for kind in KINDS}
#: Made by the fake's controllers and kubelet, not by clients (reads and deletes only).
READ_ONLY = {"Pod", "ReplicaSet", "Event"}
