"""The ReplicaSet controller and the kubelet's side of a pod: a ReplicaSet's pods made or removed
to its replica count (not-ready and newest first), each pod's status as the kubelet reports it,
and the kubelet's Warning event when a pod starts failing.

A new pod is Ready `ready_after` polls of its Deployment after it was made, unless its ReplicaSet
was made while `pods_fail` held for the Deployment: then it never is, and from its first poll on
reports the failure (kubelet.py).
"""

from __future__ import annotations

import copy
import uuid
from typing import TYPE_CHECKING

from tests.fakes.kubernetes_api.kinds import BY_KIND
from tests.fakes.kubernetes_api.kubelet import NODE, Run, kubelet_view, pod_ready, pod_status
from tests.fakes.kubernetes_api.links import owned_by, owner_reference, safe_hash

if TYPE_CHECKING:
    from tests.fakes.kubernetes_api.workloads import Workloads

REPLICA_SET, POD = BY_KIND["ReplicaSet"], BY_KIND["Pod"]
CRASHES = ("CrashLoopBackOff", "OOMKilled")


class ReplicaSetController:
    def __init__(self, workloads: Workloads):
        self.workloads = workloads
        self.cluster = workloads.cluster

    def pods(self, replica_set: dict) -> list[dict]:
        return [
            pod
            for pod in self.cluster.find("Pod", replica_set["metadata"]["namespace"])
            if owned_by(pod, replica_set)
        ]

    def available(self, replica_set: dict) -> int:
        return sum(1 for pod in self.pods(replica_set) if pod_ready(pod))

    def sync(self, deployment: dict, replica_set: dict) -> None:
        pods = self.pods(replica_set)
        wanted = replica_set["spec"]["replicas"]
        newest_first = sorted(pods, key=lambda pod: pod["metadata"]["creationTimestamp"], reverse=True)
        for pod in sorted(newest_first, key=pod_ready)[: max(0, len(pods) - wanted)]:
            self.cluster.remove(pod)
        for _ in range(wanted - len(pods)):
            self._make_pod(deployment, replica_set)
        polls = self.workloads.polls.get(deployment["metadata"]["uid"], 0)
        failure = self.workloads.rs_failure.get(replica_set["metadata"]["uid"])
        for pod in self.pods(replica_set):
            age = polls - self.workloads.born[pod["metadata"]["uid"]]
            shows = failure if age >= 1 or self.workloads.ready_after == 0 else None  # pulling takes a poll
            ready = failure is None and (age >= self.workloads.ready_after or pod_ready(pod))
            if self.workloads.live is not None:
                run = self.workloads.live.run(pod)
            else:
                run = Run(started=ready, ready=ready, failure=shows, restarts=age if shows in CRASHES else 0)
            status = pod_status(
                pod, run, since=pod["metadata"]["creationTimestamp"], now=self.cluster.stamp()
            )
            if kubelet_view(status) != kubelet_view(pod["status"]):
                if run.failure and pod["metadata"]["uid"] not in self.workloads.reported:
                    self.workloads.reported.add(pod["metadata"]["uid"])
                    self._failure_event(pod, run)
                pod["status"] = status
                self.cluster.put(POD, pod)
        pods = self.pods(replica_set)
        ready = sum(1 for pod in pods if pod_ready(pod))
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
            "status": {"phase": "Pending", "podIP": f"10.244.0.{next(self.workloads.addresses) % 250 + 2}"},
        }
        self.workloads.born[pod["metadata"]["uid"]] = self.workloads.polls.get(
            deployment["metadata"]["uid"], 0
        )
        self.cluster.put(POD, pod)

    def _failure_event(self, pod: dict, run: Run) -> None:
        container = pod["spec"]["containers"][0]
        if run.failure in ("ImagePullBackOff", "ErrImagePull"):
            reason, message = "Failed", f'Failed to pull image "{container["image"]}": {run.failure}'
        elif run.failure not in CRASHES:
            reason, message = "Failed", f"Error: {run.message or run.failure}"
        else:
            reason = "BackOff"
            message = (
                f"Back-off restarting failed container {container['name']} in pod {pod['metadata']['name']}"
            )
        self.workloads.event(pod, "Warning", reason, "kubelet", message)
