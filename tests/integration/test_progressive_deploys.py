"""Progressive deploys on the local runtime, end to end: a real Celery worker deploys, real serving
processes answer loopback traffic, the worker's scraper counts it, and beat's rollout check (sent
to the worker as beat sends it) moves the rollout on or rolls it back by itself.

The faulty version is iris behind a pipeline step that raises for a petal length of 4242
(`tests.faulty.FailsOn`, uploaded as skops with its type trusted): it answers those rows with a
500, the live version answers them as it answers any other.
"""

import http.client
import json
import time
from urllib.parse import urlsplit

import pytest

from endpoints.demo import IRIS_FEATURES, IRIS_LABELS, NamedBytes
from endpoints.models import AuditEvent, Deployment, DeploymentStatus, Endpoint, RolloutStatus
from endpoints.services.deployments import deployment_request
from endpoints.services.rollouts import rollout_settings
from endpoints.services.versions import model_version_register
from portal import queue
from portal.celery import app
from tests.fixtures.worker import revision_pid
from tests.integration.test_whole_loop import another_iris_version, wait_for_deployment
from worker.runtimes.local import processes

pytestmark = pytest.mark.integration

GOOD = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))
SENTINEL = {**GOOD, "petal_length": 4242.0}  # the faulty version fails on it


@pytest.fixture(autouse=True)
def _static_root(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path


@pytest.fixture
def endpoint(admin):
    """An open endpoint: these tests are about which version answers, not who may call."""
    from endpoints.services.endpoints import endpoint_create

    return endpoint_create(user=admin, name="iris-rollout", access_mode="open")


def faulty_version(admin, ml_model):
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from tests.faulty import FailsOn

    frame = load_iris(as_frame=True).frame
    features = frame.iloc[:, :4]
    features.columns = IRIS_FEATURES
    model = make_pipeline(FailsOn(column=2, value=4242.0), LogisticRegression(max_iter=1000))
    data = sio.dumps(model.fit(features, frame["target"]))
    return model_version_register(
        user=admin,
        ml_model=ml_model,
        upload=NamedBytes(data, "iris-faulty.skops"),
        label_map=IRIS_LABELS,
        trusted_types=["tests.faulty.FailsOn"],
    )


def send(url: str, rows: list[dict]) -> list[int]:
    """POST each row to /predict on one kept-alive connection; the status of each answer."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    statuses = []
    try:
        for row in rows:
            connection.request(
                "POST", "/predict", body=json.dumps(row), headers={"content-type": "application/json"}
            )
            answer = connection.getresponse()
            answer.read()
            statuses.append(answer.status)
    finally:
        connection.close()
    return statuses


def versions(url: str, count: int) -> set[int]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    seen = set()
    try:
        for _ in range(count):
            connection.request("GET", "/v1/model")
            answer = connection.getresponse()
            seen.add(json.loads(answer.read())["version"])
    finally:
        connection.close()
    return seen


def beat_until(deployment_id: int, done, *, timeout: float = 90) -> Deployment:
    """Send the scrape and the rollout check to the worker, as beat does, until `done(deployment)`."""
    deadline = time.monotonic() + timeout
    while True:
        app.send_task(queue.SCRAPE_TRAFFIC)
        time.sleep(0.5)
        app.send_task(queue.ADVANCE_ROLLOUTS)
        time.sleep(1.0)
        deployment = Deployment.objects.get(pk=deployment_id)
        if done(deployment):
            return deployment
        if time.monotonic() >= deadline:
            raise AssertionError(f"rollout still {deployment.rollout_status}: {deployment.steps}")


def live_then_progressive(admin, endpoint, iris_version, new_version, **rollout):
    stable = wait_for_deployment(
        deployment_request(user=admin, endpoint=endpoint, model_version=iris_version).pk, timeout=120
    )
    assert stable.status == DeploymentStatus.READY, stable.error
    progressive = deployment_request(
        user=admin, endpoint=endpoint, model_version=new_version, rollout=rollout_settings(**rollout)
    )
    progressive = wait_for_deployment(progressive.pk, timeout=120)
    assert progressive.status == DeploymentStatus.READY, progressive.error
    assert progressive.rollout_status == RolloutStatus.ADVANCING
    return stable, progressive


def test_a_version_that_fails_on_some_inputs_is_rolled_back_by_itself(
    celery_worker_process, admin, endpoint, iris_version
):
    faulty = faulty_version(admin, iris_version.model)
    stable, progressive = live_then_progressive(
        admin,
        endpoint,
        iris_version,
        faulty,
        steps=[30, 100],
        step_seconds=600,  # it must never get that far
        window_seconds=60,
        max_error_percent=5.0,
        max_p99_ms=5000,
        min_requests=20,
    )
    url = Endpoint.objects.get(pk=endpoint.pk).url
    canary_revision = progressive.resources["revision"]
    canary_pid = revision_pid(endpoint.name, canary_revision)
    # A third of the rows make the faulty version fail; it gets 30 % of them: 5xx on about a third
    # of its own requests, none on the live version's.
    statuses = send(url, [SENTINEL if n % 3 == 0 else GOOD for n in range(300)])
    assert statuses.count(500) > 0 and set(statuses) == {200, 500}

    rolled = beat_until(progressive.pk, lambda d: d.rollout_status != RolloutStatus.ADVANCING)
    assert rolled.rollout_status == RolloutStatus.ROLLED_BACK, rolled.steps
    assert rolled.status == DeploymentStatus.ROLLED_BACK
    assert "5xx on" in rolled.rollout_reason and "above 5%" in rolled.rollout_reason
    entry = rolled.steps[-1]
    assert (entry["step"], entry["state"]) == ("rollout_rollback", "failed")
    assert "Rolled back by itself: 5xx on" in entry["message"]
    event = AuditEvent.objects.get(action="deployment.rollout_rollback")
    assert "5xx on" in event.details["reason"] and event.details["live_again"] == stable.pk
    assert Endpoint.objects.get(pk=endpoint.pk).live_deployment_id == stable.pk
    # Every request is the live version's again: the failing rows answer 200, the canary is gone.
    assert set(send(url, [SENTINEL] * 30)) == {200}
    assert versions(url, 20) == {iris_version.number}
    assert canary_pid is not None and not processes.alive(canary_pid)


def test_a_healthy_version_advances_to_all_the_traffic(celery_worker_process, admin, endpoint, iris_version):
    second = another_iris_version(admin, iris_version.model, c=0.5)
    stable, progressive = live_then_progressive(
        admin,
        endpoint,
        iris_version,
        second,
        steps=[25, 100],
        step_seconds=10,
        window_seconds=60,
        max_error_percent=1.0,
        max_p99_ms=5000,
        min_requests=20,
    )
    url = Endpoint.objects.get(pk=endpoint.pk).url
    stable_pid = revision_pid(endpoint.name, stable.resources["revision"])
    assert versions(url, 40) == {iris_version.number, second.number}  # both answer: 25 % / 75 %
    assert set(send(url, [SENTINEL, GOOD] * 60)) == {200}

    done = beat_until(progressive.pk, lambda d: d.rollout_status != RolloutStatus.ADVANCING)
    assert done.rollout_status == RolloutStatus.COMPLETE, done.steps
    assert (done.traffic_percent, done.rollout_percent) == (100, 100)
    moves = [step["step"] for step in done.steps if step["step"].startswith("rollout_")]
    assert [move for move in moves if not move.endswith("_wait")] == [
        "rollout_25",
        "rollout_100",
    ]
    assert "Healthy at 25%" in done.steps[-1]["message"]
    assert AuditEvent.objects.filter(action="deployment.rollout_complete", target_id=str(done.pk)).exists()
    assert Deployment.objects.get(pk=stable.pk).status == DeploymentStatus.SUPERSEDED
    assert versions(url, 20) == {second.number}
    assert stable_pid is not None and not processes.alive(stable_pid)


def counted(url: str, count: int) -> dict[int, int]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    seen: dict[int, int] = {}
    try:
        for _ in range(count):
            connection.request("GET", "/v1/model")
            version = json.loads(connection.getresponse().read())["version"]
            seen[version] = seen.get(version, 0) + 1
    finally:
        connection.close()
    return seen


def test_reconcile_brings_back_a_canary_and_the_version_it_shares_with(
    celery_worker_process, admin, endpoint, iris_version
):
    import os
    import signal

    from endpoints.services.deployments import endpoints_revive

    second = another_iris_version(admin, iris_version.model, c=0.5)
    stable = wait_for_deployment(
        deployment_request(user=admin, endpoint=endpoint, model_version=iris_version).pk, timeout=120
    )
    canary = wait_for_deployment(
        deployment_request(user=admin, endpoint=endpoint, model_version=second, traffic_percent=30).pk,
        timeout=120,
    )
    assert (stable.status, canary.status, canary.shares_with_id) == ("ready", "ready", stable.pk)
    url = Endpoint.objects.get(pk=endpoint.pk).url
    assert counted(url, 100) == {iris_version.number: 70, second.number: 30}

    stable_pid = revision_pid(endpoint.name, stable.resources["revision"])
    os.kill(stable_pid, signal.SIGKILL)  # the machine lost the live version's process
    deadline = time.monotonic() + 10
    while processes.alive(stable_pid) and time.monotonic() < deadline:
        time.sleep(0.05)

    revived = endpoints_revive()

    assert revived[0].startswith(f"{endpoint.name} (") and stable.resources["revision"] in revived[0]
    assert counted(url, 100) == {iris_version.number: 70, second.number: 30}
    assert endpoints_revive() == []  # both serve, the share is in place: nothing to do
