"""The kubernetes runtime's pods running the real serving process (the fake kubelet's live mode:
each pod's container as a local process on loopback, its Secret and claim volumes as directories):
the model from the volume, keys from the mounted access Secret, a revoke in force without a
redeploy, the pods' own output read back as the endpoint's log, and a rollout behind the Service
(the fake kube-proxy) that refuses no request."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import pytest

from endpoints.demo import IRIS_FEATURES
from endpoints.sealing import key_hash
from tests.fakes.fixtures import *  # noqa: F403
from worker.runtimes.base import AccessPolicy, DeploySpec, KeyRecord, PermanentError, Resources
from worker.runtimes.kubernetes.config import KubernetesConfig
from worker.runtimes.kubernetes.runtime import KubernetesRuntime
from worker.runtimes.logs import LogQuery
from worker.tests.contract.conftest import Harness, kubernetes_values
from worker.tests.contract.conftest import iris_model as iris_model  # the fixture, shared

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 60.0
SECRET = "mep_live-kubernetes-test-key-0123456789"
ROW = dict.fromkeys(IRIS_FEATURES, 1.0)


def launch(container):
    """The serving image's command, `python -m serving`, on the pod's loopback port."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        **container.env,
        "PORT": str(container.port),
        "SERVING_HOST": "127.0.0.1",
    }
    return [sys.executable, "-m", "serving"], env


@pytest.fixture
def live(fake_kubernetes, tmp_path, request):
    """A runtime on real time (the pods take real seconds to load the model) and live pods."""
    values = {
        **kubernetes_values(fake_kubernetes, tmp_path),
        "KUBERNETES_POLL_INTERVAL_SECONDS": 0.2,
        "KUBERNETES_WAIT_SECONDS": WAIT_SECONDS,
    }
    runtime = KubernetesRuntime(KubernetesConfig.from_values(values))
    fake_kubernetes.clock = time.time  # the progress deadline in real seconds too
    fake_kubernetes.run_pods(launch, claims={"model-artifacts": values["KUBERNETES_ARTIFACT_DIR"]})
    harness = Harness(runtime, "iris", request.getfixturevalue("iris_model"))
    harness.resources = Resources(min_instances=1)
    return harness


def until(check, what: str):
    give_up = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < give_up:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {WAIT_SECONDS:.0f} s")


def predict(url: str) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=ROW, headers={"x-api-key": SECRET}, timeout=10)


def test_the_pods_serve_the_model_from_the_volume_and_a_revoke_reaches_them_without_a_redeploy(
    live, fake_kubernetes
):
    record = KeyRecord(prefix=SECRET[:12], key_hash=key_hash(SECRET))
    spec: DeploySpec = live.spec(1, access=AccessPolicy(mode="api_key", keys=(record,)))
    resources = live.deploy(spec)
    (pod,) = [item["metadata"]["name"] for item in fake_kubernetes.list("Pod")]
    url = fake_kubernetes.pod_url(pod)

    answer = predict(url)
    assert answer.status_code == 200, answer.text
    assert httpx.post(f"{url}/predict", json=ROW, timeout=10).status_code == 401

    revoked = AccessPolicy(mode="api_key", keys=(KeyRecord(record.prefix, record.key_hash, revoked=True),))
    live.runtime.apply_access("iris", revoked)

    def refused() -> bool:
        live.runtime.kube.read("Deployment", "iris")  # the kubelet syncs the mounted Secret as it runs
        return predict(url).status_code == 403

    until(refused, "the revoked key being refused")
    assert predict(url).json()["error"] == "API key revoked"
    assert [item["metadata"]["name"] for item in fake_kubernetes.list("Pod")] == [pod]  # no redeploy

    page = live.runtime.read_log("iris", resources, LogQuery())
    assert page.revision == "iris-d1" and page.entries
    assert any("iris" in entry.message for entry in page.entries)


def test_a_rollout_behind_the_service_refuses_no_request(live, fake_kubernetes):
    import threading

    open_access = AccessPolicy(mode="open")
    first = live.deploy(live.spec(1, access=open_access))
    url = fake_kubernetes.service_url("iris")
    answers: list[int | str] = []
    done = threading.Event()

    def call_all_along():
        with httpx.Client(timeout=10, headers={"connection": "close"}) as client:
            while not done.is_set():
                try:
                    answers.append(client.post(f"{url}/predict", json=ROW).status_code)
                except httpx.HTTPError as exc:
                    answers.append(type(exc).__name__)

    caller = threading.Thread(target=call_all_along)
    caller.start()
    try:
        until(lambda: len(answers) >= 5, "the first answers through the Service")
        before = len(answers)
        second = live.deploy(live.spec(2, access=open_access, previous=first))
        seen = len(answers)
        until(lambda: len(answers) >= seen + 5, "answers after the rollout")
    finally:
        done.set()
        caller.join()

    assert second["revision"] == "iris-d2" and seen > before  # requests went on during the rollout
    (pod,) = fake_kubernetes.list("Pod")
    assert pod["metadata"]["labels"]["model-endpoint-portal/revision"] == "iris-d2"
    assert set(answers) == {200}, f"{len(answers)} requests: {sorted(set(map(str, answers)))}"


def test_a_revision_whose_serving_process_exits_fails_with_its_exit_and_the_live_one_keeps_answering(
    live, fake_kubernetes
):
    import dataclasses

    open_access = AccessPolicy(mode="open")
    first = live.deploy(live.spec(1, access=open_access))
    # The progress deadline (30 s, the least the runtime takes) passes twenty times faster.
    start = time.time()
    fake_kubernetes.clock = lambda: start + (time.time() - start) * 20
    live.runtime.kube.cfg = dataclasses.replace(live.runtime.cfg, progress_deadline=30)
    broken = dataclasses.replace(live.model, format="onnx")  # a skops file served as ONNX: serving exits

    with pytest.raises(PermanentError) as failed:
        live.deploy(live.spec(2, access=open_access, previous=first, model=broken))

    message = str(failed.value)
    assert "iris-d2 never became ready" in message and "iris-d1 keeps serving" in message
    assert "exited with an error" in message and "exit code" in message
    assert (
        "The last lines a pod printed:" in message
        and "Not starting: The ONNX file could not be read" in message
    )
    url = fake_kubernetes.service_url("iris")
    assert httpx.post(f"{url}/predict", json=ROW, timeout=10).status_code == 200
