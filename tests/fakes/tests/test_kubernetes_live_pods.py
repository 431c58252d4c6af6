"""The fake kubelet's live mode: pods run their command as local processes on loopback."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes.tests.manifests import deployment, poll, secret, service

NS = "models"
SERVER = Path(__file__).with_name("little_server.py")
WAIT_SECONDS = 30.0


def launch(container):
    return [sys.executable, str(SERVER)], {**container.env, "PORT": str(container.port)}


def live_deployment(**env: str) -> dict:
    body = deployment(replicas=1)
    pod = body["spec"]["template"]["spec"]
    pod["containers"][0].update(
        env=[{"name": name, "value": value} for name, value in env.items()],
        readinessProbe={"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1},
        volumeMounts=[{"name": "key", "mountPath": "/etc/web", "readOnly": True}],
    )
    pod["volumes"] = [{"name": "key", "secret": {"secretName": "web-key"}}]
    return body


def until(check, what: str):
    """Poll `check` until it holds (a process takes real time to start), or fail naming `what`."""
    give_up = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < give_up:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"{what} did not happen")


def serving_pod(kube, fake_kubernetes) -> str:
    """Run a live Deployment whose pod serves its Secret's greeting; the pod's name once it is Ready."""
    fake_kubernetes.run_pods(launch)
    kube.core.create_namespaced_secret(NS, secret(stringData={"greeting": "hello"}))
    kube.apps.create_namespaced_deployment(NS, live_deployment(FILE="/etc/web/greeting", VERSION="1"))
    until(lambda: poll(kube)["ready"] == 1, "the pod getting ready")
    (pod,) = fake_kubernetes.list("Pod")
    return pod["metadata"]["name"]


def container_status(fake_kubernetes) -> dict:
    (pod,) = fake_kubernetes.list("Pod")
    return pod["status"]["containerStatuses"][0]


def test_a_live_pod_runs_its_command_reads_its_secret_and_gets_ready(kube, fake_kubernetes):
    name = serving_pod(kube, fake_kubernetes)
    url = fake_kubernetes.pod_url(name)
    assert httpx.get(f"{url}/file").text == "hello"
    kube.core.patch_namespaced_secret("web-key", NS, {"stringData": {"greeting": "bonjour"}})
    poll(kube)
    assert httpx.get(f"{url}/file").text == "bonjour"
    assert kube.core.read_namespaced_pod_log(name, NS).startswith("starting on port ")


def test_a_live_pod_whose_command_exits_crash_loops_with_its_exit_code(kube, fake_kubernetes):
    fake_kubernetes.run_pods(launch)
    kube.core.create_namespaced_secret(NS, secret(stringData={"greeting": "hello"}))
    kube.apps.create_namespaced_deployment(NS, live_deployment(EXIT_CODE="3"))

    def crashed():
        poll(kube)
        return container_status(fake_kubernetes)["restartCount"] >= 1

    until(crashed, "the container exiting")
    status = container_status(fake_kubernetes)
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert poll(kube)["ready"] == 0
    (pod,) = fake_kubernetes.list("Pod")
    assert "failing on purpose" in kube.core.read_namespaced_pod_log(pod["metadata"]["name"], NS)


def test_deleting_a_live_deployment_stops_its_process(kube, fake_kubernetes):
    url = fake_kubernetes.pod_url(serving_pod(kube, fake_kubernetes))
    kube.apps.delete_namespaced_deployment("web", NS)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/readyz")


def test_a_live_pod_without_its_secret_waits_with_create_container_config_error(kube, fake_kubernetes):
    fake_kubernetes.run_pods(launch)
    kube.apps.create_namespaced_deployment(NS, live_deployment(FILE="/etc/web/greeting"))
    assert poll(kube)["ready"] == 0
    waiting = container_status(fake_kubernetes)["state"]["waiting"]
    assert waiting == {"reason": "CreateContainerConfigError", "message": 'secret "web-key" not found'}


def test_live_pods_run_on_the_wall_clock_and_stopping_them_goes_back_to_polls(fake_kubernetes):
    fake_kubernetes.run_pods(launch)
    assert fake_kubernetes.clock is time.time
    fake_kubernetes.run_pods(None)
    assert fake_kubernetes.clock is None
    own = [1_900_000_000.0]
    fake_kubernetes.clock = lambda: own[0]
    fake_kubernetes.run_pods(launch)
    assert fake_kubernetes.clock() == own[0]


def test_a_service_answers_from_ready_pods_all_through_a_rollout(kube, fake_kubernetes):
    serving_pod(kube, fake_kubernetes)
    kube.core.create_namespaced_service(NS, service())
    url = fake_kubernetes.service_url("web")
    assert httpx.get(f"{url}/version").text == "1"
    kube.apps.replace_namespaced_deployment("web", NS, live_deployment(FILE="/etc/web/greeting", VERSION="2"))
    answers = []

    def rolled_out():
        state = poll(kube)
        answers.append(httpx.get(f"{url}/version").text)  # raises if the Service had no pod to answer
        return state["Progressing"] == ("True", "NewReplicaSetAvailable") and state["observed"] == 2

    until(rolled_out, "the rollout")
    assert set(answers) <= {"1", "2"}
    assert answers[-1] == "2"


def test_a_service_without_a_ready_pod_refuses_the_connection(kube, fake_kubernetes):
    fake_kubernetes.run_pods(launch)
    kube.core.create_namespaced_service(NS, service())
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{fake_kubernetes.service_url('web')}/version")
