"""Load tests end to end: a real Celery worker runs Locust in its child process against a real
local serving process on loopback (a few seconds, two users), started and cancelled over the API."""

import time
from pathlib import Path

import pytest
from django.utils import timezone

from endpoints.models import ApiKey, LoadTest, LoadTestStatus, OwedTask
from endpoints.services.deployments import deployment_request
from portal import queue
from portal.celery import app
from tests.integration.test_whole_loop import api, wait_for_deployment
from worker.tests.test_local_runtime import wait_until

pytestmark = pytest.mark.integration

#: A bound on every wait here, never a figure the test asserts.
PATIENCE = 120


@pytest.fixture
def serving(celery_worker_process, admin, endpoint, iris_version):
    """`iris-prod`, checking keys, deployed by the worker."""
    deployment = wait_for_deployment(
        deployment_request(user=admin, endpoint=endpoint, model_version=iris_version).pk, timeout=PATIENCE
    )
    assert deployment.status == "ready", (deployment.error, celery_worker_process.log_text()[-4000:])
    endpoint.refresh_from_db()
    return endpoint


def wait_for(test_id: int, condition, worker) -> LoadTest:
    deadline = time.monotonic() + PATIENCE
    while True:
        test = LoadTest.objects.get(pk=test_id)
        if condition(test):
            return test
        if time.monotonic() > deadline:
            raise AssertionError(f"{test} is {test.status}: {test.error}\n{worker.log_text()[-4000:]}")
        time.sleep(0.2)


def test_the_worker_runs_a_test_started_over_the_api_and_revokes_its_key(
    serving, admin, celery_worker_process
):
    response = api(admin).post(
        f"/api/v1/endpoints/{serving.name}/load-tests/",
        {"users": 2, "spawn_rate": 2, "duration_seconds": 4},
        format="json",
    )
    assert response.status_code == 202, response.json()

    test = wait_for(response.json()["id"], lambda test: not test.is_active, celery_worker_process)

    assert test.status == LoadTestStatus.DONE, (test.error, celery_worker_process.log_text()[-4000:])
    body = api(admin).get(response.json()["url"]).json()
    assert body["summary"]["requests"] > 0 and body["summary"]["failures"] == 0
    assert len(body["timeseries"]) >= 3
    assert ApiKey.objects.get(pk=test.api_key_id).revoked_at is not None


def test_a_running_test_is_cancelled_and_keeps_what_it_measured(serving, admin, celery_worker_process):
    started = (
        api(admin)
        .post(
            f"/api/v1/endpoints/{serving.name}/load-tests/",
            {"users": 2, "spawn_rate": 2, "duration_seconds": 60},
            format="json",
        )
        .json()
    )
    wait_for(started["id"], lambda test: len(test.timeseries) >= 2, celery_worker_process)

    assert api(admin).post(f"{started['url']}cancel/").status_code == 200
    test = wait_for(started["id"], lambda test: not test.is_active, celery_worker_process)

    assert test.status == LoadTestStatus.CANCELLED, test.error
    assert test.summary["stopped"] is True and test.summary["requests"] > 0
    assert ApiKey.objects.get(pk=test.api_key_id).revoked_at is not None


def load_test_processes() -> list[int]:
    """The pids of the Locust child processes running on this machine for `iris-prod`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            parts = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker.load_test" in parts and any(part.endswith(b"locustfile-iris-prod.py") for part in parts):
            found.append(int(cmdline.parent.name))
    return found


def test_a_test_whose_worker_is_killed_ends_failed_with_its_key_revoked(
    serving, admin, celery_worker_process
):
    celery_worker_process.restart(DEPLOY_CLAIM_SECONDS="3")
    started = (
        api(admin)
        .post(
            f"/api/v1/endpoints/{serving.name}/load-tests/",
            {"users": 2, "spawn_rate": 2, "duration_seconds": 60},
            format="json",
        )
        .json()
    )
    wait_for(started["id"], lambda test: len(test.timeseries) >= 1, celery_worker_process)
    assert len(load_test_processes()) == 1

    celery_worker_process.kill()  # SIGKILL, worker and pool, mid-test
    # The Locust process is in a session of its own, so the kill spared it: it sees its parent gone.
    assert wait_until(lambda: not load_test_processes(), timeout=30)
    assert LoadTest.objects.get(pk=started["id"]).status == LoadTestStatus.RUNNING

    celery_worker_process.start(DEPLOY_CLAIM_SECONDS="3")
    wait_until(lambda: LoadTest.objects.get(pk=started["id"]).claimed_until < timezone.now(), timeout=10)
    wait_until(lambda: OwedTask.objects.get(task=queue.RUN_LOAD_TEST).due_at < timezone.now(), timeout=10)
    app.send_task(queue.RELAY)  # what beat sends every few seconds
    test = wait_for(started["id"], lambda test: not test.is_active, celery_worker_process)

    assert test.status == LoadTestStatus.FAILED
    assert "stopped before it ended" in test.error
    assert len(test.timeseries) >= 1  # what it measured before is kept
    assert ApiKey.objects.get(pk=test.api_key_id).revoked_at is not None
