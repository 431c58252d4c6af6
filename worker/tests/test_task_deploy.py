"""The body of `worker.deploy`: waiting on the cloud spends no retry, failing transiently does.

These are unit tests of the task body, so they run it with Celery's `Task.apply()`: the task
executes in this process with a real `self.request`, and each `self.retry(...)` is carried out at
once as the next eager run, with `request.retries` counted as a worker would count it (countdowns
are not waited). That is what the retry logic needs; it is not a stand-in for the worker in the
integration tests, which run a real Celery worker process.
"""

import pytest

from endpoints.models import AuditEvent, Deployment, DeploymentStatus
from endpoints.services.deployments import deployment_request
from worker import tasks
from worker.runtimes.base import Pending, TransientError


@pytest.fixture
def queued(admin, endpoint, iris_version, memory_runtime) -> Deployment:
    return deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)


def run_task(runtime, *errors, deployment):
    """Run worker.deploy with the revision step raising `errors` in turn before it succeeds."""
    runtime.fail("revision", *errors)
    return tasks.deploy.apply(args=[deployment.pk])


def test_a_step_pending_twice_then_done_finishes_the_deployment(memory_runtime, queued):
    pending = Pending("revision not ready yet")
    result = run_task(memory_runtime, pending, pending, deployment=queued)

    assert result.get() == DeploymentStatus.READY
    assert memory_runtime.runs["revision"] == 3
    queued.refresh_from_db()
    assert queued.status == DeploymentStatus.READY and queued.attempts == 3
    assert [(s["step"], s["state"]) for s in queued.steps] == [
        ("artifact", "done"),
        ("revision", "done"),
        ("switch", "done"),
    ]
    assert queued.endpoint.live_deployment_id == queued.pk


def test_waiting_longer_than_the_retry_budget_still_finishes(memory_runtime, queued):
    waits = tasks.deploy.max_retries + 3

    result = run_task(memory_runtime, *[Pending("operation still running")] * waits, deployment=queued)

    assert result.get() == DeploymentStatus.READY
    assert memory_runtime.runs["revision"] == waits + 1


def test_a_transient_failure_past_the_retry_budget_fails_the_deployment(memory_runtime, queued):
    failures = [TransientError("Cloud Run unavailable")] * (tasks.deploy.max_retries + 1)

    assert run_task(memory_runtime, *failures, deployment=queued).get() == "failed"

    queued.refresh_from_db()
    assert queued.status == DeploymentStatus.FAILED
    assert queued.error == "Gave up after retries: Cloud Run unavailable"
    assert memory_runtime.runs["revision"] == tasks.deploy.max_retries + 1
    assert AuditEvent.objects.filter(action="deployment.failed", target_id=str(queued.pk)).exists()


def test_waits_do_not_shorten_the_retries_left_for_failures(memory_runtime, queued):
    failures = [TransientError("Cloud Run unavailable")] * tasks.deploy.max_retries
    waits = [Pending("operation still running")] * 5

    assert run_task(memory_runtime, *waits, *failures, deployment=queued).get() == DeploymentStatus.READY
    assert memory_runtime.runs["revision"] == 5 + tasks.deploy.max_retries + 1


def test_the_journal_shows_a_pending_step_as_waiting(memory_runtime, queued):
    from endpoints.services.operations import deployment_run

    memory_runtime.fail("revision", Pending("still creating"))
    with pytest.raises(Pending):
        deployment_run(deployment_id=queued.pk)

    queued.refresh_from_db()
    assert [(s["step"], s["state"], s["message"]) for s in queued.steps][-1] == (
        "revision",
        "waiting",
        "still creating",
    )
    assert queued.status == DeploymentStatus.RUNNING and queued.claimed_until is None
