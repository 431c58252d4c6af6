"""The fake cluster's Deployment controller, kubelet and HPA controller, over a client's polls."""

from __future__ import annotations

import json
import re

import pytest
from kubernetes.client import ApiException

from tests.fakes.tests.manifests import deployment, hpa, poll

NS = "models"
REVISION = "deployment.kubernetes.io/revision"
ZERO_DOWN = {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def ready_pods(fake_kubernetes, replica_set: dict) -> int:
    pod_hash = replica_set["metadata"]["labels"]["pod-template-hash"]
    return sum(
        1
        for pod in fake_kubernetes.list("Pod")
        if pod["metadata"]["labels"]["pod-template-hash"] == pod_hash
        and any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])
    )


def by_revision(fake_kubernetes) -> dict[str, dict]:
    return {rs["metadata"]["annotations"][REVISION]: rs for rs in fake_kubernetes.list("ReplicaSet")}


def test_a_new_deployment_moves_through_its_conditions_over_polls(kube, fake_kubernetes):
    assert fake_kubernetes.ready_after == 2
    kube.apps.create_namespaced_deployment(NS, deployment())
    first = poll(kube)
    assert first["observed"] == 1
    assert first["Progressing"] == ("True", "NewReplicaSetCreated")
    assert first["Available"] == ("False", "MinimumReplicasUnavailable")
    assert (first["updated"], first["ready"], first["unavailable"]) == (2, 0, 2)
    assert poll(kube)["ready"] == 0
    done = poll(kube)
    assert done["Progressing"] == ("True", "NewReplicaSetAvailable")
    assert done["Available"] == ("True", "MinimumReplicasAvailable")
    assert (done["ready"], done["unavailable"]) == (2, 0)
    (replica_set,) = fake_kubernetes.list("ReplicaSet")
    assert replica_set["metadata"]["annotations"][REVISION] == "1"
    assert fake_kubernetes.get("Deployment", "web")["metadata"]["annotations"][REVISION] == "1"


def test_a_template_change_rolls_to_a_new_replica_set_while_the_old_keeps_serving(kube, fake_kubernetes):
    fake_kubernetes.ready_after = 1
    kube.apps.create_namespaced_deployment(NS, deployment(strategy=ZERO_DOWN))
    poll(kube), poll(kube)
    updated = kube.apps.replace_namespaced_deployment(
        "web", NS, deployment(image="serving:2", strategy=ZERO_DOWN)
    )
    assert updated.metadata.generation == 2
    rolling = poll(kube)
    assert rolling["observed"] == 2
    old, new = by_revision(fake_kubernetes)["1"], by_revision(fake_kubernetes)["2"]
    assert new["spec"]["template"]["spec"]["containers"][0]["image"] == "serving:2"
    assert new["metadata"]["name"] == f"web-{new['metadata']['labels']['pod-template-hash']}"
    assert (ready_pods(fake_kubernetes, old), ready_pods(fake_kubernetes, new)) == (2, 0)
    assert rolling["Available"] == ("True", "MinimumReplicasAvailable")
    states = [poll(kube) for _ in range(4)]
    assert states[-1]["Progressing"] == ("True", "NewReplicaSetAvailable")
    assert "ReplicaSetUpdated" in [state["Progressing"][1] for state in states]
    assert all(state["ready"] >= 2 for state in states)  # maxUnavailable 0: never below the desired count
    assert by_revision(fake_kubernetes)["1"]["spec"]["replicas"] == 0
    assert ready_pods(fake_kubernetes, new) == 2


@pytest.mark.parametrize(
    ("reason", "waiting", "terminated"),
    [
        ("ImagePullBackOff", "ImagePullBackOff", None),
        ("ErrImagePull", "ErrImagePull", None),
        ("CrashLoopBackOff", "CrashLoopBackOff", "Error"),
        ("OOMKilled", "CrashLoopBackOff", "OOMKilled"),
    ],
)
def test_a_failing_rollout_passes_its_deadline_while_the_old_pods_serve(
    kube, fake_kubernetes, reason, waiting, terminated
):
    fake_kubernetes.ready_after = 1
    kube.apps.create_namespaced_deployment(NS, deployment(strategy=ZERO_DOWN, progressDeadlineSeconds=180))
    poll(kube), poll(kube)
    fake_kubernetes.pods_fail("web", reason)
    kube.apps.patch_namespaced_deployment(
        "web", NS, {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "serving:bad"}]}}}}
    )
    states = [poll(kube) for _ in range(6)]
    assert states[0]["Progressing"] == ("True", "NewReplicaSetCreated")
    assert states[-1]["Progressing"] == ("False", "ProgressDeadlineExceeded")
    assert states[-1]["Available"] == ("True", "MinimumReplicasAvailable")
    assert (states[-1]["ready"], states[-1]["updated"]) == (2, 1)
    old, new = by_revision(fake_kubernetes)["1"], by_revision(fake_kubernetes)["2"]
    assert ready_pods(fake_kubernetes, old) == 2
    pods = kube.core.list_namespaced_pod(
        NS, label_selector=f"app=web,pod-template-hash={new['metadata']['labels']['pod-template-hash']}"
    ).items
    (status,) = pods[0].status.container_statuses
    assert (status.ready, status.state.waiting.reason) == (False, waiting)
    assert (status.last_state.terminated.reason if status.last_state.terminated else None) == terminated
    deployment_status = fake_kubernetes.get("Deployment", "web")["status"]
    progressing = next(c for c in deployment_status["conditions"] if c["type"] == "Progressing")
    assert progressing["message"] == f'ReplicaSet "{new["metadata"]["name"]}" has timed out progressing.'
    warnings = kube.core.list_namespaced_event(NS, field_selector="type=Warning").items
    assert [event.involved_object.name for event in warnings] == [pods[0].metadata.name]


def test_a_deadline_is_measured_on_the_clock_a_test_gives(kube, fake_kubernetes):
    now = [1_900_000_000.0]
    fake_kubernetes.clock = lambda: now[0]
    fake_kubernetes.pods_fail("web", "ImagePullBackOff")
    kube.apps.create_namespaced_deployment(NS, deployment(progressDeadlineSeconds=600))
    assert all(poll(kube)["Progressing"][0] == "True" for _ in range(20))
    now[0] += 601
    assert poll(kube)["Progressing"] == ("False", "ProgressDeadlineExceeded")


def test_without_a_clock_each_poll_moves_the_cluster_by_seconds_per_poll(kube, fake_kubernetes):
    fake_kubernetes.seconds_per_poll = 300
    fake_kubernetes.pods_fail("web", "ErrImagePull")
    kube.apps.create_namespaced_deployment(NS, deployment(progressDeadlineSeconds=600))
    reasons = [poll(kube)["Progressing"][1] for _ in range(4)]
    assert reasons == [
        "NewReplicaSetCreated",
        "NewReplicaSetCreated",
        "NewReplicaSetCreated",
        "ProgressDeadlineExceeded",
    ]


def test_healed_pods_let_the_next_rollout_complete(kube, fake_kubernetes):
    fake_kubernetes.ready_after = 1
    fake_kubernetes.pods_fail("web", "CrashLoopBackOff")
    kube.apps.create_namespaced_deployment(NS, deployment())
    assert [poll(kube)["ready"] for _ in range(3)] == [0, 0, 0]
    fake_kubernetes.pods_heal("web")
    kube.apps.patch_namespaced_deployment(
        "web", NS, {"spec": {"template": {"metadata": {"annotations": {"restartedAt": "now"}}}}}
    )
    states = [poll(kube) for _ in range(4)]
    assert states[-1]["Progressing"] == ("True", "NewReplicaSetAvailable")
    assert states[-1]["ready"] == 2


def test_going_back_to_an_old_template_reuses_its_replica_set_with_the_next_revision(kube, fake_kubernetes):
    fake_kubernetes.ready_after = 0
    kube.apps.create_namespaced_deployment(NS, deployment())
    poll(kube)
    kube.apps.replace_namespaced_deployment("web", NS, deployment(image="serving:2"))
    poll(kube)
    kube.apps.replace_namespaced_deployment("web", NS, deployment(image="serving:1"))
    rolled_back = poll(kube)
    assert rolled_back["Progressing"] in (("True", "FoundNewReplicaSet"), ("True", "NewReplicaSetAvailable"))
    revisions = by_revision(fake_kubernetes)
    assert sorted(revisions) == ["2", "3"]
    assert revisions["3"]["spec"]["template"]["spec"]["containers"][0]["image"] == "serving:1"
    assert revisions["3"]["spec"]["replicas"] == 2


def test_scaling_to_zero_leaves_no_pods(kube, fake_kubernetes):
    fake_kubernetes.ready_after = 0
    kube.apps.create_namespaced_deployment(NS, deployment())
    assert poll(kube)["ready"] == 2
    kube.apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": 0}})
    state = poll(kube)
    assert (state["ready"], state["updated"]) == (0, 0)
    assert fake_kubernetes.list("Pod") == []
    assert state["Available"] == ("True", "MinimumReplicasAvailable")


def test_recreate_empties_the_old_replica_set_first(kube, fake_kubernetes):
    fake_kubernetes.ready_after = 1
    kube.apps.create_namespaced_deployment(NS, deployment(strategy={"type": "Recreate"}))
    poll(kube), poll(kube)
    kube.apps.replace_namespaced_deployment(
        "web", NS, deployment(image="serving:2", strategy={"type": "Recreate"})
    )
    state = poll(kube)
    assert by_revision(fake_kubernetes)["1"]["spec"]["replicas"] == 0
    assert (state["ready"], state["updated"]) == (0, 2)


def test_an_hpa_keeps_its_deployment_within_its_bounds(kube, fake_kubernetes):
    kube.apps.create_namespaced_deployment(NS, deployment(replicas=1))
    kube.autoscaling.create_namespaced_horizontal_pod_autoscaler(NS, hpa(minimum=3, maximum=5))
    poll(kube)
    assert kube.apps.read_namespaced_deployment("web", NS).spec.replicas == 3
    scaler = kube.autoscaling.read_namespaced_horizontal_pod_autoscaler("web", NS)
    assert scaler.status.desired_replicas == 3
    assert scaler.spec.metrics[0].resource.target.average_utilization == 80
    reasons = [event.reason for event in kube.core.list_namespaced_event(NS).items]
    assert "SuccessfulRescale" in reasons


def test_a_running_pod_serves_the_log_its_container_wrote(kube, fake_kubernetes):
    fake_kubernetes.ready_after = 0
    kube.apps.create_namespaced_deployment(NS, deployment(replicas=1))
    poll(kube)
    (pod,) = fake_kubernetes.list("Pod")
    name = pod["metadata"]["name"]
    fake_kubernetes.write_log(name, "starting", "listening on :8080", "ready")
    assert kube.core.read_namespaced_pod_log(name, NS, tail_lines=2) == "listening on :8080\nready\n"
    stamped = kube.core.read_namespaced_pod_log(
        name, NS, timestamps=True, _preload_content=False
    ).data.decode()
    first = stamped.splitlines()[0]
    assert first.endswith(" starting")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z starting", first)


def test_a_pod_that_never_started_has_no_log_but_a_crash_looping_one_has(kube, fake_kubernetes):
    fake_kubernetes.pods_fail("web", "ImagePullBackOff")
    kube.apps.create_namespaced_deployment(NS, deployment("web", replicas=1))
    fake_kubernetes.pods_fail("api", "CrashLoopBackOff")
    kube.apps.create_namespaced_deployment(NS, deployment("api", replicas=1))
    poll(kube, "web"), poll(kube, "web"), poll(kube, "api"), poll(kube, "api")
    pulling, crashing = (fake_kubernetes.list("Pod")[index]["metadata"]["name"] for index in (1, 0))
    with pytest.raises(ApiException) as caught:
        kube.core.read_namespaced_pod_log(pulling, NS)
    assert caught.value.status == 400
    message = json.loads(caught.value.body)["message"]
    assert (
        message == f'container "app" in pod "{pulling}" is waiting to start: trying and failing to pull image'
    )
    fake_kubernetes.write_log(crashing, "Traceback (most recent call last):", "MemoryError")
    assert kube.core.read_namespaced_pod_log(crashing, NS, previous=True).endswith("MemoryError\n")


def test_scaling_up_adds_pods_that_get_ready_while_the_ready_ones_stay_ready(kube, fake_kubernetes):
    fake_kubernetes.ready_after = 0
    kube.apps.create_namespaced_deployment(NS, deployment())
    assert poll(kube)["ready"] == 2
    fake_kubernetes.ready_after = 2
    kube.apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 3}})
    assert [poll(kube)["ready"] for _ in range(3)] == [2, 2, 3]
