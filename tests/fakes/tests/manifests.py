"""Objects as a runtime would send them, and a rollout's state as a runtime polls it."""

from __future__ import annotations

import copy


def deployment(name: str = "web", *, image: str = "serving:1", replicas: int = 2, **spec) -> dict:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "ports": [{"containerPort": 8080}],
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "256Mi"},
                                "limits": {"memory": "1Gi"},
                            },
                        }
                    ]
                },
            },
        },
    }
    body["spec"].update(copy.deepcopy(spec))
    return body


def service(name: str = "web") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def secret(name: str = "web-key", **fields) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, **fields}


def hpa(name: str = "web", *, minimum: int = 2, maximum: int = 5) -> dict:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": minimum,
            "maxReplicas": maximum,
        },
    }


def poll(kube, name: str = "web") -> dict:
    """One read of the rollout's status, as `kubectl rollout status` reads it."""
    status = kube.apps.read_namespaced_deployment_status(name, "models").status
    conditions = {c.type: (c.status, c.reason) for c in status.conditions or []}
    return {
        "observed": status.observed_generation,
        "updated": status.updated_replicas or 0,
        "ready": status.ready_replicas or 0,
        "unavailable": status.unavailable_replicas or 0,
        **conditions,
    }
