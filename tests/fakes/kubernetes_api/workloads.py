"""The controllers of the fake cluster, run whenever a client reads: the Deployment controller
(deployments.py), the ReplicaSet controller and the kubelet (replicasets.py, kubelet.py), the HPA
controller (autoscaler.py); and the Service IP allocator and the Events they record.

Time is the client's polls: each read of a Deployment is one poll of it. Progress deadlines are
measured on the cluster's clock (see Cluster.now), which by default moves with the polls too.
"""

from __future__ import annotations

import itertools
import uuid

from tests.fakes.kubernetes_api.autoscaler import sync_hpa
from tests.fakes.kubernetes_api.deployments import DeploymentController
from tests.fakes.kubernetes_api.kinds import BY_KIND
from tests.fakes.kubernetes_api.processes import LiveKubelet
from tests.fakes.kubernetes_api.replicasets import ReplicaSetController
from tests.fakes.kubernetes_api.status import FieldError, invalid

EVENT = BY_KIND["Event"]


class Workloads:
    """The controllers and the state they share (what a real cluster keeps in its nodes)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.ready_after = 2
        #: (namespace, deployment) -> the reason the pods of its rollouts to come fail with
        self.failing: dict[tuple[str, str], str] = {}
        self.rs_failure: dict[str, str] = {}  # ReplicaSet uid -> the reason its pods fail with
        self.polls: dict[str, int] = {}  # Deployment uid -> reads of it
        self.born: dict[str, int] = {}  # Pod uid -> its Deployment's polls when it was made
        self.reported: set[str] = set()  # Pod uids whose failure has its Event
        self.logs: dict[tuple[str, str], list[tuple[float, str]]] = {}  # (pod uid, container) -> lines
        self.addresses = itertools.count(2)
        self.live: LiveKubelet | None = None  # pods run as local processes (processes.py)
        self.replica_sets = ReplicaSetController(self)
        self.deployments = DeploymentController(self)

    # --- entry points --------------------------------------------------------------------------

    def observe(self, kind: str, objects: list[dict]) -> None:
        """A client reads `objects`: a read of Deployments is a poll of each; then the controllers run."""
        if kind == "Deployment" and objects:
            self.cluster.polls += 1
            for deployment in objects:
                uid = deployment["metadata"]["uid"]
                self.polls[uid] = self.polls.get(uid, 0) + 1
        for deployment in self.cluster.find("Deployment"):
            self.deployments.sync(deployment)
        for hpa in self.cluster.find("HorizontalPodAutoscaler"):
            sync_hpa(self, hpa)

    def write_log(self, pod_uid: str, container: str, lines: tuple[str, ...]) -> None:
        """Lines the container writes now, each a microsecond after the one before."""
        written = self.logs.setdefault((pod_uid, container), [])
        moment = self.cluster.now()
        for line in lines:
            moment = max(moment, written[-1][0] + 1e-6) if written else moment
            written.append((moment, line))

    def initial_status(self, kind: str, obj: dict) -> dict:
        if kind == "Namespace":
            return {"phase": "Active"}
        if kind == "Service":
            return {"loadBalancer": {}}
        if kind == "HorizontalPodAutoscaler":
            return {"desiredReplicas": 0}  # the one status field the API never omits
        return {}

    def allocate(self, service: dict) -> None:
        """A new Service's cluster IP, and a node port (30000-32767) for each port of a NodePort or
        LoadBalancer Service that names none."""
        spec = service["spec"]
        if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
            index = next(self.addresses)
            spec["clusterIP"] = f"10.96.{index // 250}.{index % 250 + 1}"
        if spec.get("clusterIP"):
            spec["clusterIPs"] = [spec["clusterIP"]]
        if spec["type"] in ("NodePort", "LoadBalancer"):
            taken = {
                port.get("nodePort")
                for other in self.cluster.find("Service")
                for port in other["spec"].get("ports") or []
            }
            free = (number for number in range(30000, 32768) if number not in taken)
            for port in spec.get("ports") or []:
                port.setdefault("nodePort", next(free))

    def keep_allocated(self, service: dict, old: dict) -> None:
        """A PUT that leaves the allocated clusterIP (or a port's nodePort) out keeps it; one that
        changes the clusterIP is refused."""
        spec, allocated = service["spec"], old["spec"].get("clusterIP")
        spec.setdefault("clusterIP", allocated)
        spec.setdefault("clusterIPs", old["spec"].get("clusterIPs"))
        node_ports = {
            port["port"]: port["nodePort"] for port in old["spec"].get("ports") or [] if "nodePort" in port
        }
        if spec["type"] in ("NodePort", "LoadBalancer"):
            for port in spec.get("ports") or []:
                if port["port"] in node_ports:
                    port.setdefault("nodePort", node_ports[port["port"]])
            self.allocate(service)
        if spec["clusterIP"] != allocated:
            error = FieldError(
                "FieldValueInvalid", "spec.clusterIPs[0]", "field is immutable", spec["clusterIP"]
            )
            raise invalid("Service", "", old["metadata"]["name"], [error])

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
