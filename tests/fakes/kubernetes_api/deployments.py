"""The Deployment controller, as documented:

- A changed pod template makes a new ReplicaSet `<deployment>-<pod-template-hash>` with the
  `pod-template-hash` label on it, its selector and its pods, and `deployment.kubernetes.io/revision`
  one above the highest; a template equal to an older ReplicaSet's reuses that one (a rollback) and
  gives it the next revision. Old ReplicaSets past `revisionHistoryLimit` are deleted once empty.
- RollingUpdate scales the new ReplicaSet up within `maxSurge` and the old ones down while at least
  `replicas - maxUnavailable` pods are available (25%/25% by default, surge rounded up, unavailability
  down): with maxUnavailable 0 the old pods keep serving until new ones are Ready. Recreate empties
  the old ReplicaSets first.
- `status`: observedGeneration, replicas, updatedReplicas, readyReplicas, availableReplicas,
  unavailableReplicas (zeros left out, as the API omits them), and the conditions `Available`
  (MinimumReplicasAvailable / MinimumReplicasUnavailable) and `Progressing` (NewReplicaSetCreated,
  FoundNewReplicaSet, ReplicaSetUpdated on progress, NewReplicaSetAvailable once complete, and False
  ProgressDeadlineExceeded when `lastUpdateTime + progressDeadlineSeconds` has passed without progress).
"""

from __future__ import annotations

import copy
import json
import math
from typing import TYPE_CHECKING

from tests.fakes.kubernetes_api.kinds import BY_KIND
from tests.fakes.kubernetes_api.kubelet import pod_ready
from tests.fakes.kubernetes_api.links import HASH_LABEL, owned_by, owner_reference, safe_hash
from tests.fakes.kubernetes_api.times import parse_time

if TYPE_CHECKING:
    from tests.fakes.kubernetes_api.workloads import Workloads

REVISION = "deployment.kubernetes.io/revision"
DEPLOYMENT, REPLICA_SET = BY_KIND["Deployment"], BY_KIND["ReplicaSet"]


def resolve(value: int | str, total: int, *, round_up: bool) -> int:
    """An intOrString like maxSurge ("25%" or 1) as a count of `total` pods."""
    if isinstance(value, int):
        return value
    share = total * int(value.rstrip("%")) / 100
    return math.ceil(share) if round_up else math.floor(share)


def template_key(template: dict) -> str:
    """A pod template compared as the controller does: without its pod-template-hash label."""
    template = copy.deepcopy(template)
    (template.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return json.dumps(template, sort_keys=True)


def find_condition(status: dict, kind: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)


class DeploymentController:
    def __init__(self, workloads: Workloads):
        self.workloads = workloads
        self.cluster = workloads.cluster
        self.replica_sets = workloads.replica_sets

    def sync(self, deployment: dict) -> None:
        meta, spec = deployment["metadata"], deployment["spec"]
        namespace = meta["namespace"]
        sets = [rs for rs in self.cluster.find("ReplicaSet", namespace) if owned_by(rs, deployment)]
        revisions = [int(rs["metadata"]["annotations"].get(REVISION, "0")) for rs in sets]
        key = template_key(spec["template"])
        new = next((rs for rs in sets if template_key(rs["spec"]["template"]) == key), None)
        progressing = None
        if new is None:
            new = self._new_replica_set(deployment, max(revisions, default=0) + 1)
            progressing = ("NewReplicaSetCreated", f'Created new replica set "{new["metadata"]["name"]}"')
        elif int(new["metadata"]["annotations"].get(REVISION, "0")) < max(revisions):
            new["metadata"]["annotations"][REVISION] = str(max(revisions) + 1)
            self.cluster.put(REPLICA_SET, new)
            progressing = ("FoundNewReplicaSet", f'Found new replica set "{new["metadata"]["name"]}"')
        old = sorted((rs for rs in sets if rs is not new), key=lambda rs: rs["metadata"]["creationTimestamp"])
        self._roll(deployment, new, old)
        self._clean_history(deployment, old)
        self._write_status(
            deployment,
            new,
            [rs for rs in old if rs["metadata"]["name"] in self._names(namespace)],
            progressing,
        )

    def _names(self, namespace: str) -> set[str]:
        return {rs["metadata"]["name"] for rs in self.cluster.find("ReplicaSet", namespace)}

    def _new_replica_set(self, deployment: dict, revision: int) -> dict:
        meta = deployment["metadata"]
        template = copy.deepcopy(deployment["spec"]["template"])
        pod_hash = safe_hash([template, meta["uid"]])
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
        selector = copy.deepcopy(deployment["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        replica_set = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{pod_hash}",
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {
                    REVISION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(deployment["spec"]["replicas"]),
                    "deployment.kubernetes.io/max-replicas": str(deployment["spec"]["replicas"]),
                },
                "ownerReferences": [owner_reference(deployment)],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {"replicas": 0},
        }
        replica_set["metadata"] = self.cluster.new_meta(
            REPLICA_SET, meta["namespace"], replica_set["metadata"]
        )
        reason = self.workloads.failing.get((meta["namespace"], meta["name"]))
        if reason:
            self.workloads.rs_failure[replica_set["metadata"]["uid"]] = reason
        return self.cluster.put(REPLICA_SET, replica_set)

    def _roll(self, deployment: dict, new: dict, old: list[dict]) -> None:
        spec = deployment["spec"]
        desired = spec["replicas"]
        strategy = spec["strategy"]
        if strategy["type"] == "Recreate":
            for rs in old:
                self._scale(deployment, rs, 0)
            if not any(self.replica_sets.pods(rs) for rs in old):
                self._scale(deployment, new, desired)
            return
        rolling = strategy["rollingUpdate"]
        surge = resolve(rolling["maxSurge"], desired, round_up=True)
        unavailable = resolve(rolling["maxUnavailable"], desired, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        everyone = [new, *old]
        total = sum(rs["spec"]["replicas"] for rs in everyone)
        wanted = new["spec"]["replicas"]
        if wanted > desired:
            wanted = desired
        elif wanted < desired:
            wanted += max(0, min(desired + surge - total, desired - wanted))
        self._scale(deployment, new, wanted)
        min_available = desired - unavailable
        total = sum(rs["spec"]["replicas"] for rs in everyone)
        new_unavailable = new["spec"]["replicas"] - self.replica_sets.available(new)
        room = total - min_available - new_unavailable
        for rs in old:  # not-ready old pods go first: they serve nobody
            unhealthy = rs["spec"]["replicas"] - self.replica_sets.available(rs)
            cut = max(0, min(room, unhealthy))
            if cut:
                self._scale(deployment, rs, rs["spec"]["replicas"] - cut)
                room -= cut
        room = sum(self.replica_sets.available(rs) for rs in everyone) - min_available
        for rs in old:
            cut = max(0, min(room, rs["spec"]["replicas"]))
            if cut:
                self._scale(deployment, rs, rs["spec"]["replicas"] - cut)
                room -= cut

    def _scale(self, deployment: dict, replica_set: dict, replicas: int) -> None:
        before = replica_set["spec"]["replicas"]
        if before != replicas:
            replica_set["spec"]["replicas"] = replicas
            annotations = replica_set["metadata"]["annotations"]
            annotations["deployment.kubernetes.io/desired-replicas"] = str(deployment["spec"]["replicas"])
            self.cluster.put(REPLICA_SET, replica_set)
            direction, name = "up" if replicas > before else "down", replica_set["metadata"]["name"]
            self.workloads.event(
                deployment,
                "Normal",
                "ScalingReplicaSet",
                "deployment-controller",
                f"Scaled {direction} replica set {name} from {before} to {replicas}",
            )
        self.replica_sets.sync(deployment, replica_set)

    def _clean_history(self, deployment: dict, old: list[dict]) -> None:
        empty = [rs for rs in old if rs["spec"]["replicas"] == 0 and not self.replica_sets.pods(rs)]
        limit = deployment["spec"].get("revisionHistoryLimit", 10)
        for rs in empty[: max(0, len(empty) - limit)]:
            self.cluster.remove(rs)

    def _write_status(self, deployment: dict, new: dict, old: list[dict], progressing: tuple | None) -> None:
        spec, meta = deployment["spec"], deployment["metadata"]
        everyone = [new, *old]
        pods = [pod for rs in everyone for pod in self.replica_sets.pods(rs)]
        ready = sum(1 for pod in pods if pod_ready(pod))
        available = ready  # minReadySeconds is not modelled: a Ready pod is available at once
        figures = {
            "replicas": len(pods),
            "updatedReplicas": len(self.replica_sets.pods(new)),
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": max(0, sum(rs["spec"]["replicas"] for rs in everyone) - available),
        }
        before = deployment.get("status") or {}
        status = {"observedGeneration": meta["generation"], **{k: v for k, v in figures.items() if v}}
        status["conditions"] = copy.deepcopy(before.get("conditions") or [])
        rolling = spec["strategy"].get("rollingUpdate") or {}
        unavailable = resolve(rolling.get("maxUnavailable", 0), spec["replicas"], round_up=False)
        if available >= spec["replicas"] - unavailable:
            self._condition(
                status,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        else:
            self._condition(
                status,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        name = new["metadata"]["name"]
        current = find_condition(status, "Progressing")
        if progressing:
            self._condition(status, "Progressing", "True", *progressing)
        elif not (
            figures["replicas"] == figures["updatedReplicas"]
            and current
            and current["reason"] == "NewReplicaSetAvailable"
        ):
            complete = figures["updatedReplicas"] == figures["replicas"] == available == spec["replicas"]
            moved = any(
                figures[field] > before.get(field, 0)
                for field in ("updatedReplicas", "readyReplicas", "availableReplicas")
            )
            moved = moved or (
                figures["replicas"] - figures["updatedReplicas"]
                < before.get("replicas", 0) - before.get("updatedReplicas", 0)
            )
            if complete:
                self._condition(
                    status,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{name}" has successfully progressed.',
                )
            elif moved:
                self._condition(
                    status,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    f'ReplicaSet "{name}" is progressing.',
                    touch=True,
                )
            elif current and self._timed_out(current, spec):
                self._condition(
                    status,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{name}" has timed out progressing.',
                )
        changed = status != before
        if new["metadata"]["annotations"][REVISION] != meta.setdefault("annotations", {}).get(REVISION):
            meta["annotations"][REVISION] = new["metadata"]["annotations"][REVISION]
            changed = True
        if changed:
            deployment["status"] = status
            self.cluster.put(DEPLOYMENT, deployment)

    def _timed_out(self, condition: dict, spec: dict) -> bool:
        if condition["reason"] == "ProgressDeadlineExceeded":
            return True
        return parse_time(condition["lastUpdateTime"]) + spec["progressDeadlineSeconds"] < self.cluster.now()

    def _condition(
        self, status: dict, kind: str, value: str, reason: str, message: str, *, touch: bool = False
    ) -> None:
        """Set a condition as SetDeploymentCondition does: unchanged when status and reason are (unless
        `touch`, which moves lastUpdateTime on progress), lastTransitionTime kept while status holds."""
        now = self.cluster.stamp()
        current = find_condition(status, kind)
        if current and current["status"] == value and current["reason"] == reason and not touch:
            return
        condition = {
            "type": kind,
            "status": value,
            "lastUpdateTime": now,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        }
        if current and current["status"] == value:
            condition["lastTransitionTime"] = current["lastTransitionTime"]
        status["conditions"] = [c for c in status["conditions"] if c["type"] != kind] + [condition]
