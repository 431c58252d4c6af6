"""The portal's own service layer on RUNTIME=kubernetes, against the fake API server: deploys,
a revision that never gets ready, a rollback, the allowlist, stop, start and delete, journaled
as the worker runs them."""

import pytest

from endpoints.models import Deployment, DeploymentStatus
from endpoints.services.access import access_apply
from endpoints.services.allowlist import allowlist_add
from endpoints.services.deployments import deployment_request, deployment_rollback
from endpoints.services.endpoints import endpoint_create
from endpoints.services.lifecycle import endpoint_delete, endpoint_start, endpoint_stop
from endpoints.services.operations import deployment_run
from tests.fakes.fixtures import *  # noqa: F403
from worker.runtimes import get_runtime
from worker.runtimes.base import TransientError
from worker.runtimes.kubernetes.manifests import policy_of
from worker.runtimes.kubernetes.rollout import template_revision
from worker.runtimes.kubernetes.runtime import KubernetesRuntime
from worker.tests.contract.conftest import kubernetes_values


@pytest.fixture
def on_kubernetes(settings, fake_kubernetes, tmp_path):
    settings.RUNTIME = "kubernetes"
    for name, value in kubernetes_values(fake_kubernetes, tmp_path).items():
        setattr(settings, name, value)
    settings.KUBERNETES_POLL_INTERVAL_SECONDS = 0.001
    return settings


def run(operation: Deployment) -> str:
    """Run it as the worker does: again while a step waits on the cluster (a few tries at most)."""
    for _ in range(10):
        try:
            return deployment_run(deployment_id=operation.pk)
        except TransientError:
            continue
    raise AssertionError(f"{operation} never finished")


def test_runtime_kubernetes_picks_the_kubernetes_runtime(on_kubernetes):
    assert isinstance(get_runtime(), KubernetesRuntime)


def test_a_deployment_goes_live_journaling_each_step_and_a_failed_one_leaves_it_serving(
    on_kubernetes, fake_kubernetes, admin, iris_version
):
    endpoint = endpoint_create(user=admin, name="iris-prod", min_instances=1)
    first = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)

    assert run(first) == DeploymentStatus.READY

    first.refresh_from_db()
    endpoint.refresh_from_db()
    assert [(step["step"], step["state"]) for step in first.steps] == [
        (name, "done") for name in ("artifact", "access", "deployment", "service", "autoscaler", "rollout")
    ]
    assert endpoint.live_deployment == first
    assert endpoint.url == "http://iris-prod.models.svc.cluster.local"
    assert first.resources["revision"] == f"iris-prod-d{first.pk}"

    fake_kubernetes.pods_fail("iris-prod", "CrashLoopBackOff")
    second = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    assert run(second) == DeploymentStatus.FAILED

    second.refresh_from_db()
    endpoint.refresh_from_db()
    assert "CrashLoopBackOff" in second.error and f"iris-prod-d{first.pk} keeps serving" in second.error
    assert endpoint.live_deployment == first
    assert template_revision(fake_kubernetes.get("Deployment", "iris-prod")) == f"iris-prod-d{first.pk}"


def test_a_rollback_an_allowlist_a_stop_a_start_and_a_delete_through_the_portal(
    on_kubernetes, fake_kubernetes, admin, iris_version
):
    endpoint = endpoint_create(user=admin, name="iris-prod", min_instances=1, access_mode="ip_allowlist")
    first = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    run(first)
    run(deployment_request(user=admin, endpoint=endpoint, model_version=iris_version))
    first.refresh_from_db()

    back = deployment_rollback(user=admin, deployment=first)
    assert run(back) == DeploymentStatus.READY
    back.refresh_from_db()
    assert back.resources["revision"] == first.resources["revision"]

    allowlist_add(user=admin, endpoint=endpoint, cidr="198.51.100.0/24")
    access_apply(endpoint_id=endpoint.pk)
    policy = policy_of(fake_kubernetes.get("Secret", "iris-prod-access"))
    assert (policy["mode"], policy["cidrs"]) == ("ip_allowlist", ["198.51.100.0/24"])

    assert run(endpoint_stop(user=admin, endpoint=endpoint)) == DeploymentStatus.DONE
    assert fake_kubernetes.get("Deployment", "iris-prod")["spec"]["replicas"] == 0
    assert run(endpoint_start(user=admin, endpoint=endpoint)) == DeploymentStatus.DONE
    assert fake_kubernetes.get("Deployment", "iris-prod")["spec"]["replicas"] == 1

    endpoint.refresh_from_db()
    assert run(endpoint_delete(user=admin, endpoint=endpoint, confirm="iris-prod")) == DeploymentStatus.DONE
    for kind in ("Deployment", "ReplicaSet", "Pod", "Service", "HorizontalPodAutoscaler", "Secret"):
        assert fake_kubernetes.list(kind) == [], kind


def test_the_exported_manifests_are_the_objects_the_runtime_wrote(
    on_kubernetes, fake_kubernetes, admin, iris_version
):
    import json

    import yaml

    from endpoints.services.exports import kubernetes_manifests

    endpoint = endpoint_create(user=admin, name="iris-prod", min_instances=2, max_instances=5)
    run(deployment_request(user=admin, endpoint=endpoint, model_version=iris_version))
    endpoint.refresh_from_db()

    sent = {}
    for call in fake_kubernetes.server.calls:
        if call.request.method in ("POST", "PUT") and call.request.body:
            body = json.loads(call.request.body)
            sent[body["kind"]] = body
    exported = {item["kind"]: item for item in yaml.safe_load_all(kubernetes_manifests(endpoint))}

    assert set(exported) == set(sent) == {"Secret", "Deployment", "Service", "HorizontalPodAutoscaler"}
    for kind, item in exported.items():
        written = sent[kind]
        if kind == "Deployment":  # the runtime also says how many pods to start with
            written["spec"].pop("replicas")
        assert (
            item["spec" if "spec" in item else "data"] == written["spec" if "spec" in written else "data"]
        ), kind
        assert item["metadata"]["labels"] == written["metadata"]["labels"], kind
