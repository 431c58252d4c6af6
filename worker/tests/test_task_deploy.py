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
from worker.runtimes.base import Pending, Step, StepResult, TransientError


class ScriptedRuntime:
    """One step that raises the given errors in turn, then succeeds; it counts its calls."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.calls = 0

    def deploy_steps(self, spec):
        def revision(resources):
            self.calls += 1
            if self.errors:
                raise self.errors.pop(0)
            return StepResult("ready", {"revision": spec.revision, "url": f"https://{spec.revision}.test"})

        return [Step("revision", "Deploy the revision", revision)]


@pytest.fixture
def queued(admin, endpoint, iris_version) -> Deployment:
    return deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)


def run_task(monkeypatch, runtime, deployment):
    monkeypatch.setattr("worker.runtimes.get_runtime", lambda: runtime)
    return tasks.deploy.apply(args=[deployment.pk])


def test_a_step_pending_twice_then_done_finishes_the_deployment(monkeypatch, queued):
    runtime = ScriptedRuntime(Pending("revision not ready yet"), Pending("revision not ready yet"))

    result = run_task(monkeypatch, runtime, queued)

    assert result.get() == DeploymentStatus.READY
    assert runtime.calls == 3
    queued.refresh_from_db()
    assert queued.status == DeploymentStatus.READY and queued.attempts == 3
    assert [(s["step"], s["state"]) for s in queued.steps] == [("revision", "done")]
    assert queued.endpoint.live_deployment_id == queued.pk


def test_waiting_longer_than_the_retry_budget_still_finishes(monkeypatch, queued):
    waits = tasks.deploy.max_retries + 3
    runtime = ScriptedRuntime(*[Pending("operation still running")] * waits)

    assert run_task(monkeypatch, runtime, queued).get() == DeploymentStatus.READY
    assert runtime.calls == waits + 1


def test_a_transient_failure_past_the_retry_budget_fails_the_deployment(monkeypatch, queued):
    runtime = ScriptedRuntime(*[TransientError("Cloud Run unavailable")] * (tasks.deploy.max_retries + 1))

    assert run_task(monkeypatch, runtime, queued).get() == "failed"

    queued.refresh_from_db()
    assert queued.status == DeploymentStatus.FAILED
    assert queued.error == "Gave up after retries: Cloud Run unavailable"
    assert runtime.calls == tasks.deploy.max_retries + 1
    assert AuditEvent.objects.filter(action="deployment.failed", target_id=str(queued.pk)).exists()


def test_waits_do_not_shorten_the_retries_left_for_failures(monkeypatch, queued):
    failures = [TransientError("Cloud Run unavailable")] * tasks.deploy.max_retries
    runtime = ScriptedRuntime(*[Pending("operation still running")] * 5, *failures)

    assert run_task(monkeypatch, runtime, queued).get() == DeploymentStatus.READY
    assert runtime.calls == 5 + tasks.deploy.max_retries + 1


def test_the_journal_shows_a_pending_step_as_waiting(monkeypatch, queued):
    monkeypatch.setattr("worker.runtimes.get_runtime", lambda: ScriptedRuntime(Pending("still creating")))
    from endpoints.services.deployments import deployment_run

    with pytest.raises(Pending):
        deployment_run(deployment_id=queued.pk)

    queued.refresh_from_db()
    assert [(s["step"], s["state"], s["message"]) for s in queued.steps] == [
        ("revision", "waiting", "still creating")
    ]
    assert queued.status == DeploymentStatus.RUNNING and queued.claimed_until is None
