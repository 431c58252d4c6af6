"""The Kubernetes objects of one endpoint, built as plain dicts: what the runtime sends, and what
`manage.py k8s_manifests` writes as YAML for teams who deploy through GitOps.

    <endpoint>            Deployment  the serving pods of the live revision (one ReplicaSet each)
    <endpoint>            Service     ClusterIP, port 80 to the pods' 8080
    <endpoint>            HorizontalPodAutoscaler (autoscaling/v2) on CPU
    <endpoint>-access     Secret      the access policy, mounted as the serving access file

The model artifact is read from a volume: a PersistentVolumeClaim (KUBERNETES_ARTIFACT_CLAIM),
mounted read-only at /models, where the worker copies each verified artifact as `<sha256>.<format>`
(its own mount of the same volume: KUBERNETES_ARTIFACT_DIR). Nothing else is fetched at start: the
pods need no cloud credentials and the image no storage client.

Every function here is pure: the same arguments give the same objects.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from serving.supervisor import STOP_DEADLINE
from worker.runtimes.base import AccessPolicy, DeploySpec, PermanentError, Resources
from worker.runtimes.kubernetes.config import DNS_LABEL, KubernetesConfig

Manifest = dict[str, Any]

PREFIX = "model-endpoint-portal"
REVISION_LABEL = f"{PREFIX}/revision"
ENDPOINT_LABEL = f"{PREFIX}/endpoint"
#: On the Deployment: the revision it served before the latest template (what a failed rollout goes back to).
PREVIOUS_ANNOTATION = f"{PREFIX}/previous-revision"
MANAGED_BY = "model-endpoint-portal"
CONTAINER = "serving"
CONTAINER_PORT = 8080
MODELS_PATH = "/models"
ACCESS_PATH = "/etc/model-endpoint-access"
ACCESS_FILE = "access.json"
#: The pod is taken out of the Service's endpoints when it starts terminating, but kube-proxy and
#: ingresses learn it a moment later: serving keeps answering for this long before SIGTERM.
PRESTOP_SECONDS = 5
#: From the start of termination: the preStop wait, then serving's own drain budget from SIGTERM
#: (STOP_DEADLINE), then a margin, before the kubelet kills the container.
GRACE_SECONDS = PRESTOP_SECONDS + math.ceil(STOP_DEADLINE) + 2


def check_name(endpoint: str) -> str:
    """The endpoint's name as the objects' name; PermanentError when Kubernetes would refuse it."""
    if not DNS_LABEL.match(endpoint) or len(endpoint) > 40 or not endpoint[0].isalpha():
        raise PermanentError(
            f"{endpoint!r} cannot name Kubernetes objects: it must start with a letter, not end with a "
            "hyphen, and have at most 40 lowercase letters, digits and hyphens."
        )
    return endpoint


def secret_name(endpoint: str) -> str:
    return f"{check_name(endpoint)}-access"


def selector(endpoint: str) -> dict[str, str]:
    """The labels that tie the Service and the Deployment to the endpoint's pods (never changed)."""
    return {"app.kubernetes.io/name": "model-endpoint", ENDPOINT_LABEL: check_name(endpoint)}


def labels(endpoint: str) -> dict[str, str]:
    return {**selector(endpoint), "app.kubernetes.io/managed-by": MANAGED_BY}


def metadata(cfg: KubernetesConfig, name: str, endpoint: str) -> dict[str, Any]:
    return {"name": name, "namespace": cfg.namespace, "labels": labels(endpoint)}


def min_replicas_refusal(cfg: KubernetesConfig, min_instances: int) -> str | None:
    """Why this minimum cannot be served (None when it can): a HorizontalPodAutoscaler keeps at
    least one pod, so 0 needs a controller that takes the Deployment to zero and back."""
    if min_instances == 0 and not cfg.scale_to_zero:
        return (
            "On Kubernetes an endpoint keeps at least 1 instance: the HorizontalPodAutoscaler cannot scale "
            "to zero, and no scale-to-zero controller is configured (KUBERNETES_SCALE_TO_ZERO). Set the "
            "minimum instances to 1 or more."
        )
    return None


def artifact_file(spec: DeploySpec) -> str:
    return f"{spec.model.sha256}.{spec.model.format}"


def serving_workers(cpu: str) -> int:
    """One serving worker per whole CPU of the limit (at least one): the container sees the node's
    CPUs, not its limit."""
    vcpus = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, math.floor(vcpus))


def access_secret(cfg: KubernetesConfig, endpoint: str, access: AccessPolicy) -> Manifest:
    """The access policy as the serving access file: only key hashes, never a key."""
    document = json.dumps(access.as_json(), separators=(",", ":"), sort_keys=True)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(cfg, secret_name(endpoint), endpoint),
        "type": "Opaque",
        "data": {ACCESS_FILE: base64.b64encode(document.encode()).decode()},
    }


def policy_of(secret: Manifest) -> dict:
    """The access document a Secret made by `access_secret` carries."""
    return json.loads(base64.b64decode(secret["data"][ACCESS_FILE]))


def pod_template(cfg: KubernetesConfig, spec: DeploySpec, revision: str) -> Manifest:
    """The pods of one revision: non-root, read-only root filesystem, the artifact and the access
    file mounted read-only, ready on /readyz, alive on /healthz."""
    endpoint, res, model = spec.endpoint, spec.resources, spec.model
    meta = json.dumps(model.meta(), separators=(",", ":"), sort_keys=True)
    env = {
        "PORT": str(CONTAINER_PORT),
        "SERVING_MODEL_URI": f"{MODELS_PATH}/{artifact_file(spec)}",
        "SERVING_MODEL_META": meta,
        "SERVING_ACCESS_FILE": f"{ACCESS_PATH}/{ACCESS_FILE}",
        "SERVING_ENDPOINT": endpoint,
        "SERVING_REVISION": revision,
        "SERVING_WORKERS": str(serving_workers(res.cpu)),
    }
    probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2, "failureThreshold": 2}
    alive = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 3}
    # Loading a model takes a while: liveness starts once the process first answers.
    startup = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2, "failureThreshold": 90}
    return {
        "metadata": {
            "labels": {**labels(endpoint), REVISION_LABEL: revision},
            "annotations": {
                f"{PREFIX}/model": f"{model.name} v{model.version}",
                f"{PREFIX}/sha256": model.sha256,
            },
        },
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": GRACE_SECONDS,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": CONTAINER,
                    "image": cfg.image_for(model.format),
                    "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
                    "env": [{"name": name, "value": value} for name, value in env.items()],
                    "resources": {
                        "requests": {"cpu": res.cpu, "memory": res.memory},
                        "limits": {"cpu": res.cpu, "memory": res.memory},
                    },
                    "readinessProbe": probe,
                    "livenessProbe": alive,
                    "startupProbe": startup,
                    "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SECONDS)]}}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "runAsNonRoot": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "models", "mountPath": MODELS_PATH, "readOnly": True},
                        # A whole directory, never a subPath: the kubelet updates it when the Secret changes.
                        {"name": "access", "mountPath": ACCESS_PATH, "readOnly": True},
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "models",
                    "persistentVolumeClaim": {"claimName": cfg.artifact_claim, "readOnly": True},
                },
                {"name": "access", "secret": {"secretName": secret_name(endpoint), "defaultMode": 0o444}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            ],
        },
    }


def deployment(
    cfg: KubernetesConfig, spec: DeploySpec, revision: str, replicas: int | None = None
) -> Manifest:
    """The endpoint's Deployment serving `revision`: a new pod template makes a new ReplicaSet,
    which takes over without a refused request (maxUnavailable 0: an old pod goes only once a new
    one is ready). `replicas` None leaves the count to the HorizontalPodAutoscaler."""
    endpoint = spec.endpoint
    body: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **metadata(cfg, check_name(endpoint), endpoint),
            "annotations": {f"{PREFIX}/deployment": str(spec.deployment_id)},
        },
        "spec": {
            "selector": {"matchLabels": selector(endpoint)},
            "progressDeadlineSeconds": cfg.progress_deadline,
            "revisionHistoryLimit": 10,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": pod_template(cfg, spec, revision),
        },
    }
    if replicas is not None:
        body["spec"]["replicas"] = replicas
    return body


def service(cfg: KubernetesConfig, endpoint: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cfg, check_name(endpoint), endpoint),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(endpoint),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def autoscaler(cfg: KubernetesConfig, endpoint: str, res: Resources) -> Manifest:
    """Between the endpoint's min and max instances on CPU (KUBERNETES_CPU_TARGET percent of the
    request). A minimum of 0 (allowed only with a scale-to-zero controller) keeps 1 here: the
    controller takes the Deployment to 0, where the autoscaler stands aside."""
    if refusal := min_replicas_refusal(cfg, res.min_instances):
        raise PermanentError(refusal)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(cfg, check_name(endpoint), endpoint),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": endpoint},
            "minReplicas": max(1, res.min_instances),
            "maxReplicas": max(1, res.max_instances, res.min_instances),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cfg.cpu_target},
                    },
                }
            ],
        },
    }


def served_revision(spec: DeploySpec) -> str:
    """The revision a deployment serves: a rollback serves the one it goes back to (the same pod
    template, so Kubernetes scales that revision's ReplicaSet up again rather than making one)."""
    return spec.rollback_to.get("revision") or spec.revision


def endpoint_objects(cfg: KubernetesConfig, spec: DeploySpec) -> list[Manifest]:
    """Every object of the endpoint serving `spec`, in the order they are applied (the export)."""
    return [
        access_secret(cfg, spec.endpoint, spec.access),
        deployment(cfg, spec, served_revision(spec)),
        service(cfg, spec.endpoint),
        autoscaler(cfg, spec.endpoint, spec.resources),
    ]


def as_yaml(objects: list[Manifest]) -> str:
    """The objects as one YAML stream (`kubectl apply -f` takes it), in their order."""
    import yaml

    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)
