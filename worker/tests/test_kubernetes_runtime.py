"""The kubernetes runtime with the official client against the fake API server (tests/fakes):
what it sends, how a rollout is followed, undone and rolled back, and how refusals read."""

from __future__ import annotations

import dataclasses
import json
import socket

import kubernetes_validate
import pytest

from tests.fakes.fixtures import *  # noqa: F403
from worker.runtimes.base import (
    AccessPolicy,
    KeyRecord,
    PermanentError,
    Resources,
    TransientError,
    plan_of,
)
from worker.runtimes.kubernetes import manifests
from worker.runtimes.kubernetes.config import KubernetesConfig
from worker.runtimes.kubernetes.rollout import template_revision
from worker.runtimes.kubernetes.runtime import KubernetesRuntime
from worker.tests.contract.conftest import Harness, kubernetes_values
from worker.tests.contract.conftest import iris_model as iris_model  # the fixture, shared

ENDPOINT = "iris"


@pytest.fixture
def runtime(fake_kubernetes, clock, tmp_path) -> KubernetesRuntime:
    config = KubernetesConfig.from_values(kubernetes_values(fake_kubernetes, tmp_path))
    return KubernetesRuntime(config, sleep=clock.sleep, clock=clock.monotonic, wall=clock.time)


class Deploys(Harness):
    resources = Resources(min_instances=2, max_instances=4)


@pytest.fixture
def deploys(runtime, request) -> Deploys:
    return Deploys(runtime, ENDPOINT, request.getfixturevalue("iris_model"))


def replica_sets(fake) -> dict[str, dict]:
    """The endpoint's ReplicaSets by the revision they serve."""
    return {template_revision(item): item for item in fake.list("ReplicaSet")}


def test_every_object_the_runtime_sends_validates_against_the_kubernetes_schemas(
    fake_kubernetes, deploys, runtime
):
    first = deploys.deploy(deploys.spec(1))
    deploys.deploy(deploys.spec(2, previous=first))
    runtime.apply_access(ENDPOINT, AccessPolicy(mode="ip_allowlist", cidrs=("192.0.2.0/24",)))
    deploys.run(runtime.stop_steps(deploys.spec(2)))

    sent = [
        json.loads(call.request.body)
        for call in fake_kubernetes.server.calls
        if call.request.method in ("POST", "PUT") and call.request.body
    ]
    assert {item["kind"] for item in sent} == {"Secret", "Deployment", "Service", "HorizontalPodAutoscaler"}
    for manifest in sent:
        kubernetes_validate.validate(manifest, "1.37.0", strict=True)
    assert fake_kubernetes.warnings == []  # no field the API server dropped


def test_a_rollout_keeps_every_serving_pod_until_its_replacement_is_ready(fake_kubernetes, deploys, runtime):
    first = deploys.deploy(deploys.spec(1))
    fake_kubernetes.ready_after = 3
    seen: list[dict] = []
    read = runtime.kube.read

    def watching(kind, name):
        found = read(kind, name)
        if kind == "Deployment" and found:
            seen.append(found)
        return found

    runtime.kube.read = watching
    second = deploys.deploy(deploys.spec(2, previous=first))

    assert second["revision"] == "iris-d2" and second["previous_revision"] == "iris-d1"
    rolling = [item for item in seen if item["status"].get("updatedReplicas", 0) < 2]
    assert rolling, "the rollout was seen under way"
    assert all(item["status"]["availableReplicas"] >= 2 for item in seen)
    assert {
        revision: item["spec"]["replicas"] for revision, item in replica_sets(fake_kubernetes).items()
    } == {
        "iris-d1": 0,
        "iris-d2": 2,
    }


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        ("ImagePullBackOff", "the image cannot be pulled"),
        ("ErrImagePull", "the image cannot be pulled"),
        ("CrashLoopBackOff", "keeps exiting"),
        ("OOMKilled", "ran out of memory"),
    ],
)
def test_a_revision_that_never_gets_ready_fails_with_its_pods_reason_and_the_previous_one_keeps_serving(
    fake_kubernetes, deploys, reason, said
):
    first = deploys.deploy(deploys.spec(1))
    fake_kubernetes.pods_fail(ENDPOINT, reason)

    with pytest.raises(PermanentError) as failed:
        deploys.deploy(deploys.spec(2, previous=first))

    message = str(failed.value)
    assert "iris-d2 never became ready" in message and "ProgressDeadlineExceeded" in message
    assert reason in message and said in message
    assert "iris-d1 keeps serving" in message
    deployment = fake_kubernetes.get("Deployment", ENDPOINT)
    assert template_revision(deployment) == "iris-d1"
    assert replica_sets(fake_kubernetes)["iris-d1"]["status"]["availableReplicas"] == 2


def test_a_first_revision_that_never_gets_ready_is_scaled_to_no_pod(fake_kubernetes, deploys):
    fake_kubernetes.pods_fail(ENDPOINT, "ImagePullBackOff")

    with pytest.raises(PermanentError, match="Nothing served before it: the Deployment is scaled to no pod"):
        deploys.deploy(deploys.spec(1))

    assert fake_kubernetes.get("Deployment", ENDPOINT)["spec"]["replicas"] == 0


def test_a_rollback_scales_the_old_revisions_replica_set_up_again(fake_kubernetes, deploys):
    first = deploys.deploy(deploys.spec(1))
    second = deploys.deploy(deploys.spec(2, previous=first))
    before = replica_sets(fake_kubernetes)["iris-d1"]["metadata"]["name"]

    back = dataclasses.replace(deploys.spec(3, previous=second), rollback_to=first)
    resources = deploys.deploy(back)

    assert resources["revision"] == "iris-d1"
    assert template_revision(fake_kubernetes.get("Deployment", ENDPOINT)) == "iris-d1"
    sets = replica_sets(fake_kubernetes)
    assert sets["iris-d1"]["metadata"]["name"] == before  # the same ReplicaSet, not a new one
    assert (sets["iris-d1"]["spec"]["replicas"], sets["iris-d2"]["spec"]["replicas"]) == (2, 0)


def test_a_key_revoke_rewrites_the_secret_and_leaves_the_pods_alone(fake_kubernetes, deploys, runtime):
    deploys.deploy(deploys.spec(1))
    generation = fake_kubernetes.get("Deployment", ENDPOINT)["metadata"]["generation"]
    key = KeyRecord(prefix="mep_abcdefgh", key_hash="a" * 64)

    runtime.apply_access(ENDPOINT, AccessPolicy(mode="api_key", keys=(key,)))
    runtime.apply_access(
        ENDPOINT, AccessPolicy(mode="api_key", keys=(dataclasses.replace(key, revoked=True),))
    )

    secret = fake_kubernetes.get("Secret", "iris-access")
    assert manifests.policy_of(secret)["keys"] == [
        {"prefix": "mep_abcdefgh", "hash": "a" * 64, "expires_at": None, "revoked": True}
    ]
    assert fake_kubernetes.get("Deployment", ENDPOINT)["metadata"]["generation"] == generation


def test_a_write_that_raced_another_is_done_again_from_a_fresh_read(fake_kubernetes, deploys, runtime):
    deploys.deploy(deploys.spec(1))
    read = runtime.kube.read
    raced = []

    def racing(kind, name):
        found = read(kind, name)
        if kind == "Secret" and not raced:  # someone else writes the Secret between our read and write
            raced.append(True)
            other = dict(found)
            other["metadata"] = {**found["metadata"], "annotations": {"touched": "yes"}}
            runtime.kube.call("replace", "Secret", name, body=other, what="Touch")
        return found

    runtime.kube.read = racing
    runtime.apply_access(ENDPOINT, AccessPolicy(mode="open"))

    assert manifests.policy_of(fake_kubernetes.get("Secret", "iris-access"))["mode"] == "open"
    puts = [
        path for method, path in fake_kubernetes.requests if method == "PUT" and path.endswith("/iris-access")
    ]
    assert len(puts) == 3  # the other writer's, ours refused (409 Conflict), ours again


def test_an_object_the_api_server_finds_invalid_fails_with_its_own_words(deploys):
    spec = dataclasses.replace(deploys.spec(1), resources=Resources(min_instances=1, memory="-1Gi"))

    with pytest.raises(PermanentError, match=r"HTTP 422 Invalid") as refused:
        deploys.deploy(spec)

    assert "Create Deployment iris" in str(refused.value)
    assert "memory" in str(refused.value)  # the field at fault, as the API server names it


def test_a_minimum_of_no_instance_is_refused_before_anything_is_made(fake_kubernetes, deploys):
    spec = dataclasses.replace(deploys.spec(1), resources=Resources(min_instances=0))

    with pytest.raises(PermanentError, match="KUBERNETES_SCALE_TO_ZERO"):
        deploys.deploy(spec)

    assert fake_kubernetes.list("Secret") == [] and fake_kubernetes.list("Deployment") == []


def test_an_api_server_that_does_not_answer_is_transient(tmp_path, fake_kubernetes):
    from tests.fakes.kubernetes_api import write_kubeconfig

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = write_kubeconfig(tmp_path / "closed", f"http://127.0.0.1:{port}", "models")
    values = {**kubernetes_values(fake_kubernetes, tmp_path), "KUBERNETES_KUBECONFIG": str(kubeconfig)}
    runtime = KubernetesRuntime(KubernetesConfig.from_values(values))
    runtime.kube.cfg = dataclasses.replace(runtime.cfg, call_timeout=2.0)

    with pytest.raises(TransientError, match="did not answer"):
        runtime.apply_access(ENDPOINT, AccessPolicy(mode="open"))


def test_missing_credentials_are_permanent_and_say_what_to_set(tmp_path, fake_kubernetes):
    values = {**kubernetes_values(fake_kubernetes, tmp_path), "KUBERNETES_KUBECONFIG": str(tmp_path / "none")}
    runtime = KubernetesRuntime(KubernetesConfig.from_values(values))

    with pytest.raises(PermanentError, match="KUBERNETES_KUBECONFIG"):
        runtime.apply_access(ENDPOINT, AccessPolicy(mode="open"))


def test_a_plan_names_what_a_deploy_would_make_then_nothing_once_it_is_made(deploys, runtime):
    spec = deploys.spec(1)
    before = {change.step: change.action for change in plan_of(runtime.deploy_steps(spec))}

    assert before == {
        "artifact": "create",
        "access": "create",
        "deployment": "create",
        "service": "create",
        "autoscaler": "create",
    }
    deploys.deploy(spec)
    assert {change.action for change in plan_of(runtime.deploy_steps(spec))} == {"none"}
    assert [change.action for change in plan_of(runtime.deploy_steps(deploys.spec(2)))].count("update") == 1


def test_the_live_revisions_log_merges_its_pods_by_time_and_follows_from_its_cursor(
    fake_kubernetes, deploys, runtime
):
    from worker.runtimes.logs import LogQuery, LogQueryError

    live = deploys.deploy(deploys.spec(1))
    first, second = sorted(pod["metadata"]["name"] for pod in fake_kubernetes.list("Pod"))
    now = iter(range(1_900_000_000, 1_900_001_000))
    fake_kubernetes.clock = lambda: float(next(now))
    fake_kubernetes.write_log(first, "2030-03-17T17:46:40.000Z INFO serving[7] serving: Serving iris v1")
    request = {"time": "2030-03-17T17:46:41.000Z", "severity": "WARNING", "message": "POST /predict 401"}
    fake_kubernetes.write_log(second, json.dumps({**request, "status": 401}))
    fake_kubernetes.write_log(first, "2030-03-17T17:46:42.000Z ERROR serving[7] serving: a worker died")
    fake_kubernetes.write_log(first, "Traceback (most recent call last):")

    page = runtime.read_log(ENDPOINT, live, LogQuery())

    assert page.revision == "iris-d1"
    assert [entry.message for entry in page.entries] == [
        "serving[7] serving: Serving iris v1",
        "POST /predict 401",
        "serving[7] serving: a worker died\nTraceback (most recent call last):",
    ]
    assert page.entries[1].fields["status"] == 401
    assert [
        entry.message for entry in runtime.read_log(ENDPOINT, live, LogQuery(level="WARNING")).entries
    ] == [
        "POST /predict 401",
        "serving[7] serving: a worker died\nTraceback (most recent call last):",
    ]
    fake_kubernetes.write_log(second, "2030-03-17T17:46:50.000Z INFO serving[9] serving: still here")
    later = runtime.read_log(ENDPOINT, live, LogQuery(after=page.cursor))
    assert [entry.message for entry in later.entries] == ["serving[9] serving: still here"]
    assert runtime.read_log(ENDPOINT, live, LogQuery(after=later.cursor)).entries == ()
    with pytest.raises(LogQueryError):
        runtime.read_log(ENDPOINT, live, LogQuery(after="iris-d1@yesterday"))


def test_a_pod_whose_container_has_not_started_adds_nothing_to_the_log(fake_kubernetes, deploys, runtime):
    from worker.runtimes.logs import LogQuery

    fake_kubernetes.ready_after = 50
    fake_kubernetes.pods_fail(ENDPOINT, "ImagePullBackOff")
    resources = deploys.run(runtime.deploy_steps(deploys.spec(1))[:3])
    runtime.kube.read("Deployment", ENDPOINT)  # the controllers make the pods, which never start
    pods = [pod["metadata"]["name"] for pod in fake_kubernetes.list("Pod")]

    page = runtime.read_log(ENDPOINT, resources, LogQuery())

    assert pods and page.revision == "iris-d1" and page.entries == ()
    assert any(
        method == "GET" and path.endswith(f"{pods[0]}/log") for method, path in fake_kubernetes.requests
    )


@pytest.mark.parametrize(
    ("reason", "status", "wait"),
    [("TooManyRequests", 429, 1.0), ("ServiceUnavailable", 503, None), ("InternalError", 500, None)],
)
def test_a_busy_api_server_is_transient_and_the_step_passes_when_run_again(
    fake_kubernetes, deploys, runtime, reason, status, wait
):
    spec = deploys.spec(1)
    fake_kubernetes.fail_next(1, reason, route="/secrets")
    access = runtime.deploy_steps(spec)[1]

    with pytest.raises(TransientError, match=f"HTTP {status} {reason}") as busy:
        access.run({})

    assert busy.value.retry_after == wait
    assert access.run({}).message == "Secret iris-access created"


def test_traffic_is_read_from_prometheus_and_refused_without_it(runtime, settings):
    from datetime import UTC, datetime, timedelta

    end = datetime.now(UTC).replace(second=0, microsecond=0)
    window = {"start": end - timedelta(hours=1), "end": end, "step": 60}
    settings.PROMETHEUS_URL = ""
    with pytest.raises(PermanentError, match="set PROMETHEUS_URL"):
        runtime.traffic(ENDPOINT, None, **window)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        settings.PROMETHEUS_URL = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(TransientError, match="did not answer"):
        runtime.traffic(ENDPOINT, None, **window)


def test_a_deployment_deleted_from_outside_is_written_again_by_ensure_serving(
    fake_kubernetes, deploys, runtime
):
    spec = deploys.spec(1)
    deploys.deploy(spec)
    assert runtime.ensure_serving(spec) is False

    runtime.kube.delete("Deployment", ENDPOINT)
    assert runtime.ensure_serving(spec) is True

    assert template_revision(fake_kubernetes.get("Deployment", ENDPOINT)) == "iris-d1"
    assert runtime.ensure_serving(spec) is False


def test_a_create_that_raced_another_writer_replaces_what_it_made(fake_kubernetes, runtime):
    read = runtime.kube.read
    raced = []

    def racing(kind, name):
        found = read(kind, name)
        if kind == "Secret" and not raced:  # another worker creates the Secret after our read
            raced.append(True)
            other = manifests.access_secret(runtime.cfg, ENDPOINT, AccessPolicy(mode="api_key"))
            runtime.kube.call("create", "Secret", body=other, what="Create first")
        return found

    runtime.kube.read = racing
    runtime.apply_access(ENDPOINT, AccessPolicy(mode="open"))

    assert manifests.policy_of(fake_kubernetes.get("Secret", "iris-access"))["mode"] == "open"
    writes = [method for method, path in fake_kubernetes.requests if "/secrets" in path and method != "GET"]
    assert writes == ["POST", "POST", "PUT"]  # the other's create, ours refused (AlreadyExists), ours again


def test_a_deploy_to_a_stopped_endpoint_serves_again(fake_kubernetes, deploys, runtime):
    first = deploys.deploy(deploys.spec(1))
    deploys.run(runtime.stop_steps(dataclasses.replace(deploys.spec(1), previous=first)))
    assert fake_kubernetes.get("Deployment", ENDPOINT)["spec"]["replicas"] == 0

    deploys.deploy(deploys.spec(2, previous=first))

    deployment = fake_kubernetes.get("Deployment", ENDPOINT)
    assert deployment["spec"]["replicas"] == 2  # the endpoint's minimum
    assert deployment["status"]["availableReplicas"] == 2 and template_revision(deployment) == "iris-d2"
