"""The controllers of the fake cluster: the Deployment controller, the ReplicaSet controller, a
kubelet, the HPA controller and the Service IP allocator, run whenever a client reads.

Time is the client's polls. Each read of a Deployment is one poll of it; a new pod is Ready
`ready_after` polls of its Deployment after it was made, unless `pods_fail` was called before its
rollout began (then it never is, and reports the failure as a kubelet would). Progress deadlines are
measured on the cluster's clock (see Cluster.now).

The Deployment controller follows the documented rollout:

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
import hashlib
import itertools
import json
import math
import uuid

from tests.fakes.kubernetes_api.kinds import BY_KIND
from tests.fakes.kubernetes_api.kubelet import NODE, pod_status
from tests.fakes.kubernetes_api.status import FieldError, invalid
from tests.fakes.kubernetes_api.times import parse_time

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
#: The alphabet Kubernetes encodes hashes in (rand.SafeEncodeString: no vowels, no 0/1/3).
SAFE = "bcdfghjklmnpqrstvwxz2456789"
DEPLOYMENT, REPLICA_SET, POD = BY_KIND["Deployment"], BY_KIND["ReplicaSet"], BY_KIND["Pod"]
EVENT, HPA = BY_KIND["Event"], BY_KIND["HorizontalPodAutoscaler"]


def safe_hash(data: object, length: int = 10) -> str:
    digest = int(hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest(), 16)
    chars = []
    for _ in range(length):
        digest, index = divmod(digest, len(SAFE))
        chars.append(SAFE[index])
    return "".join(chars)


def owned_by(obj: dict, owner: dict) -> bool:
    return any(ref["uid"] == owner["metadata"]["uid"] for ref in obj["metadata"].get("ownerReferences") or [])


def owner_reference(owner: dict) -> dict:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def resolve(value: int | str, total: int, *, round_up: bool) -> int:
    """An intOrString like maxSurge ("25%" or 1) as a count of `total` pods."""
    if isinstance(value, int):
        return value
    share = total * int(value.rstrip("%")) / 100
    return math.ceil(share) if round_up else math.floor(share)


def _template_key(template: dict) -> str:
    template = copy.deepcopy(template)
    (template.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return json.dumps(template, sort_keys=True)


class Workloads:
    def __init__(self, cluster):
        self.cluster = cluster
        self.ready_after = 2
        self.failing: dict[
            tuple[str, str], str
        ] = {}  # (namespace, deployment) -> reason, for rollouts to come
        self.rs_failure: dict[str, str] = {}  # ReplicaSet uid -> the reason its pods fail with
        self.polls: dict[str, int] = {}  # Deployment uid -> reads of it
        self.born: dict[str, int] = {}  # Pod uid -> its Deployment's polls when it was made
        self.reported: set[str] = set()  # Pod uids whose failure has its Event
        self.addresses = itertools.count(2)

    # --- entry points --------------------------------------------------------------------------

    def observe(self, kind: str, objects: list[dict]) -> None:
        """A client reads `objects`: a read of Deployments is a poll of each; then the controllers run."""
        if kind == "Deployment" and objects:
            self.cluster.polls += 1
            for deployment in objects:
                uid = deployment["metadata"]["uid"]
                self.polls[uid] = self.polls.get(uid, 0) + 1
        for deployment in self.cluster.find("Deployment"):
            self.sync(deployment)
        for hpa in self.cluster.find("HorizontalPodAutoscaler"):
            self.sync_hpa(hpa)

    def initial_status(self, kind: str, obj: dict) -> dict:
        if kind == "Namespace":
            return {"phase": "Active"}
        if kind == "Service":
            return {"loadBalancer": {}}
        if kind == "HorizontalPodAutoscaler":
            return {"desiredReplicas": 0}  # the one status field the API never omits
        return {}

    def allocate_cluster_ip(self, service: dict) -> None:
        spec = service["spec"]
        if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
            index = next(self.addresses)
            spec["clusterIP"] = f"10.96.{index // 250}.{index % 250 + 1}"
        if spec.get("clusterIP"):
            spec["clusterIPs"] = [spec["clusterIP"]]

    def keep_cluster_ip(self, service: dict, old: dict) -> None:
        """A PUT that leaves the allocated clusterIP out keeps it; one that changes it is refused."""
        spec, allocated = service["spec"], old["spec"].get("clusterIP")
        spec.setdefault("clusterIP", allocated)
        spec.setdefault("clusterIPs", old["spec"].get("clusterIPs"))
        if spec["clusterIP"] != allocated:
            error = FieldError(
                "FieldValueInvalid", "spec.clusterIPs[0]", "field is immutable", spec["clusterIP"]
            )
            raise invalid("Service", "", old["metadata"]["name"], [error])

    # --- the Deployment controller ---------------------------------------------------------------

    def sync(self, deployment: dict) -> None:
        meta, spec = deployment["metadata"], deployment["spec"]
        namespace = meta["namespace"]
        sets = [rs for rs in self.cluster.find("ReplicaSet", namespace) if owned_by(rs, deployment)]
        revisions = [int(rs["metadata"]["annotations"].get(REVISION, "0")) for rs in sets]
        key = _template_key(spec["template"])
        new = next((rs for rs in sets if _template_key(rs["spec"]["template"]) == key), None)
        progressing = None
        if new is None:
            new = self._new_replica_set(deployment, max(revisions, default=0) + 1)
            progressing = ("NewReplicaSetCreated", f'Created new replica set "{new["metadata"]["name"]}"')
        elif int(new["metadata"]["annotations"].get(REVISION, "0")) < max(revisions):
            new["metadata"]["annotations"][REVISION] = str(max(revisions) + 1)
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
        reason = self.failing.get((meta["namespace"], meta["name"]))
        if reason:
            self.rs_failure[replica_set["metadata"]["uid"]] = reason
        return self.cluster.put(REPLICA_SET, replica_set)

    def _roll(self, deployment: dict, new: dict, old: list[dict]) -> None:
        spec = deployment["spec"]
        desired = spec["replicas"]
        strategy = spec["strategy"]
        if strategy["type"] == "Recreate":
            for rs in old:
                self._scale(deployment, rs, 0)
            if not any(self._pods(rs) for rs in old):
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
        new_unavailable = new["spec"]["replicas"] - self._available(new)
        room = total - min_available - new_unavailable
        for rs in old:  # not-ready old pods go first: they serve nobody
            unhealthy = rs["spec"]["replicas"] - self._available(rs)
            cut = max(0, min(room, unhealthy))
            if cut:
                self._scale(deployment, rs, rs["spec"]["replicas"] - cut)
                room -= cut
        room = sum(self._available(rs) for rs in everyone) - min_available
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
            self.event(
                deployment,
                "Normal",
                "ScalingReplicaSet",
                "deployment-controller",
                f"Scaled {direction} replica set {name} from {before} to {replicas}",
            )
        self._sync_pods(deployment, replica_set)

    def _clean_history(self, deployment: dict, old: list[dict]) -> None:
        empty = [rs for rs in old if rs["spec"]["replicas"] == 0 and not self._pods(rs)]
        limit = deployment["spec"].get("revisionHistoryLimit", 10)
        for rs in empty[: max(0, len(empty) - limit)]:
            self.cluster.remove(rs)

    def _write_status(self, deployment: dict, new: dict, old: list[dict], progressing: tuple | None) -> None:
        spec, meta = deployment["spec"], deployment["metadata"]
        everyone = [new, *old]
        pods = [pod for rs in everyone for pod in self._pods(rs)]
        ready = sum(1 for pod in pods if _ready(pod))
        available = ready  # minReadySeconds is not modelled: a Ready pod is available at once
        figures = {
            "replicas": len(pods),
            "updatedReplicas": len(self._pods(new)),
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
        current = _find(status, "Progressing")
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
        current = _find(status, kind)
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

    # --- the ReplicaSet controller and the kubelet ---------------------------------------------

    def _pods(self, replica_set: dict) -> list[dict]:
        return [
            pod
            for pod in self.cluster.find("Pod", replica_set["metadata"]["namespace"])
            if owned_by(pod, replica_set)
        ]

    def _available(self, replica_set: dict) -> int:
        return sum(1 for pod in self._pods(replica_set) if _ready(pod))

    def _sync_pods(self, deployment: dict, replica_set: dict) -> None:
        pods = self._pods(replica_set)
        wanted = replica_set["spec"]["replicas"]
        for pod in sorted(pods, key=lambda pod: (_ready(pod), pod["metadata"]["creationTimestamp"]))[
            : max(0, len(pods) - wanted)
        ]:
            self.cluster.remove(pod)
        for _ in range(wanted - len(pods)):
            self._make_pod(deployment, replica_set)
        polls = self.polls.get(deployment["metadata"]["uid"], 0)
        failure = self.rs_failure.get(replica_set["metadata"]["uid"])
        for pod in self._pods(replica_set):
            age = polls - self.born[pod["metadata"]["uid"]]
            shows = failure if age >= 1 or self.ready_after == 0 else None  # pulling or starting takes a poll
            status = pod_status(
                pod,
                ready=failure is None and age >= self.ready_after,
                failure=shows,
                restarts=age,
                started=pod["metadata"]["creationTimestamp"],
                now=self.cluster.stamp(),
            )
            if _kubelet_view(status) != _kubelet_view(pod["status"]):
                if shows and pod["metadata"]["uid"] not in self.reported:
                    self.reported.add(pod["metadata"]["uid"])
                    self._failure_event(pod, shows)
                pod["status"] = status
                self.cluster.put(POD, pod)
        pods = self._pods(replica_set)
        ready = sum(1 for pod in pods if _ready(pod))
        figures = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": replica_set["metadata"]["generation"],
        }
        status = {"replicas": len(pods), **{k: v for k, v in figures.items() if v}}
        if status != replica_set["status"]:
            replica_set["status"] = status
            self.cluster.put(REPLICA_SET, replica_set)

    def _make_pod(self, deployment: dict, replica_set: dict) -> None:
        template = replica_set["spec"]["template"]
        name = f"{replica_set['metadata']['name']}-{safe_hash(uuid.uuid4().hex, 5)}"
        meta = {
            "name": name,
            "generateName": f"{replica_set['metadata']['name']}-",
            "labels": dict(template["metadata"]["labels"]),
            "annotations": dict(template["metadata"].get("annotations") or {}),
            "ownerReferences": [owner_reference(replica_set)],
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": self.cluster.new_meta(POD, replica_set["metadata"]["namespace"], meta),
            "spec": {**copy.deepcopy(template["spec"]), "nodeName": NODE, "serviceAccountName": "default"},
            "status": {"phase": "Pending", "podIP": f"10.244.0.{next(self.addresses) % 250 + 2}"},
        }
        self.born[pod["metadata"]["uid"]] = self.polls.get(deployment["metadata"]["uid"], 0)
        self.cluster.put(POD, pod)

    def _failure_event(self, pod: dict, failure: str) -> None:
        container = pod["spec"]["containers"][0]
        if failure in ("ImagePullBackOff", "ErrImagePull"):
            reason, message = "Failed", f'Failed to pull image "{container["image"]}": {failure}'
        else:
            reason = "BackOff"
            message = (
                f"Back-off restarting failed container {container['name']} in pod {pod['metadata']['name']}"
            )
        self.event(pod, "Warning", reason, "kubelet", message)

    def event(self, about: dict, kind: str, reason: str, component: str, message: str) -> None:
        """Record an Event on `about`, as a controller or the kubelet reports what it did."""
        meta = about["metadata"]
        now = self.cluster.stamp()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": self.cluster.new_meta(
                EVENT, meta["namespace"], {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}"}
            ),
            "involvedObject": {
                "apiVersion": about["apiVersion"],
                "kind": about["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": component,
        }
        self.cluster.put(EVENT, event)

    # --- the HPA controller --------------------------------------------------------------------

    def sync_hpa(self, hpa: dict) -> None:
        """Keep the target's replicas within [minReplicas, maxReplicas], as the HPA controller does
        before it looks at metrics; the fake has no metrics server, so within the bounds it reports
        ScalingActive False (FailedGetResourceMetric) and leaves the count alone."""
        spec, meta = hpa["spec"], hpa["metadata"]
        target = spec["scaleTargetRef"]
        now = self.cluster.stamp()
        status = copy.deepcopy(hpa.get("status") or {})
        found = self.cluster.objects.get(("Deployment", meta["namespace"], target["name"]))
        conditions: list[tuple[str, str, str, str]] = []
        if target["kind"] != "Deployment" or found is None:
            conditions.append(
                (
                    "AbleToScale",
                    "False",
                    "FailedGetScale",
                    f"the HPA controller was unable to get the target's current scale: "
                    f'{target["kind"].lower()}s.apps "{target["name"]}" not found',
                )
            )
        else:
            current = found["spec"]["replicas"]
            desired = min(max(current, spec["minReplicas"]), spec["maxReplicas"])
            if current == 0:
                desired = 0
                conditions.append(
                    (
                        "ScalingActive",
                        "False",
                        "ScalingDisabled",
                        "scaling is disabled since the replica count of the target is zero",
                    )
                )
            elif desired != current:
                below = desired > current
                found["spec"]["replicas"] = desired
                found["metadata"]["generation"] += 1
                self.cluster.put(DEPLOYMENT, found)
                why = "below Spec.MinReplicas" if below else "above Spec.MaxReplicas"
                self.event(
                    hpa,
                    "Normal",
                    "SuccessfulRescale",
                    "horizontal-pod-autoscaler",
                    f"New size: {desired}; reason: Current number of replicas {why}",
                )
                status["lastScaleTime"] = now
            else:
                conditions.append(
                    (
                        "ScalingActive",
                        "False",
                        "FailedGetResourceMetric",
                        "the HPA was unable to compute the replica count: failed to get cpu "
                        "utilization: unable to get metrics for resource cpu: no metrics returned "
                        "from resource metrics API",
                    )
                )
            conditions.insert(
                0,
                (
                    "AbleToScale",
                    "True",
                    "SucceededGetScale",
                    "the HPA controller was able to get the target's current scale",
                ),
            )
            status.update(currentReplicas=found.get("status", {}).get("replicas", 0), desiredReplicas=desired)
        before = {c["type"]: c for c in status.get("conditions") or []}
        status["conditions"] = [
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": before[kind]["lastTransitionTime"]
                if kind in before and before[kind]["status"] == value
                else now,
            }
            for kind, value, reason, message in conditions
        ]
        if status != hpa.get("status"):
            hpa["status"] = status
            self.cluster.put(HPA, hpa)


def _ready(pod: dict) -> bool:
    return _ready_status(pod["status"])


def _ready_status(status: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])


def _find(status: dict, kind: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)


def _kubelet_view(status: dict) -> tuple:
    """What a new report changes: phase, readiness and each container's state and restarts."""
    containers = [
        (c.get("ready"), json.dumps(c.get("state"), sort_keys=True), c.get("restartCount"))
        for c in status.get("containerStatuses") or []
    ]
    return (status.get("phase"), _ready_status(status), tuple(containers))
