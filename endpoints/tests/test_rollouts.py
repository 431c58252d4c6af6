"""The rollout engine on the memory runtime: steps on a schedule, a rollback by itself, claims."""

from datetime import timedelta

import pytest
from django.utils import timezone

from endpoints.models import AuditEvent, Deployment, DeploymentStatus, RolloutStatus
from endpoints.services.deployments import deployment_request
from endpoints.services.errors import ServiceError
from endpoints.services.operations import deployment_run
from endpoints.services.rollouts import rollout_check, rollout_settings, rollouts_advance
from worker.runtimes.traffic import TrafficPoint

SETTINGS = dict(
    steps=[10, 50, 100],
    step_seconds=300,
    window_seconds=300,
    max_error_percent=5.0,
    max_p99_ms=500,
    min_requests=20,
)


@pytest.fixture
def rollout(admin, endpoint, iris_version, memory_runtime):
    """(stable, progressive): iris live, then a progressive deploy of it at its first step."""
    stable = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deployment_run(deployment_id=stable.pk)
    progressive = deployment_request(
        user=admin, endpoint=endpoint, model_version=iris_version, rollout=rollout_settings(**SETTINGS)
    )
    deployment_run(deployment_id=progressive.pk)
    progressive.refresh_from_db()
    stable.refresh_from_db()
    return stable, progressive


def report(runtime, deployment, *, ok=0, errors=0, p99=0.02, at=None):
    at = at or timezone.now() - timedelta(seconds=30)
    runtime.report_traffic(
        deployment.endpoint.name,
        deployment.resources["revision"],
        [TrafficPoint(at, ok=ok, server_errors=errors, p99=p99)],
    )


def later(deployment, seconds: int = 1):
    return deployment.rollout_next_at + timedelta(seconds=seconds)


def test_a_progressive_deploy_goes_live_at_its_first_step_beside_the_stable_version(rollout, memory_runtime):
    stable, progressive = rollout
    assert (progressive.traffic_percent, progressive.rollout_percent) == (10, 10)
    assert progressive.rollout_status == RolloutStatus.ADVANCING
    assert progressive.shares_with == stable
    assert memory_runtime.endpoints["iris-prod"].traffic == {
        progressive.resources["revision"]: 10,
        stable.resources["revision"]: 90,
    }
    assert progressive.steps[-1]["step"] == "rollout_10"
    assert AuditEvent.objects.filter(action="deployment.rollout_step", target_id=str(progressive.pk)).exists()


def test_a_healthy_revision_advances_step_by_step_to_all_the_traffic(rollout, memory_runtime):
    stable, progressive = rollout
    report(memory_runtime, progressive, ok=100, at=progressive.rollout_next_at - timedelta(seconds=30))
    assert (
        rollout_check(deployment_id=progressive.pk, now=progressive.rollout_next_at - timedelta(seconds=1))
        == ""
    )
    assert rollout_check(deployment_id=progressive.pk, now=later(progressive)) == "10% -> 50%"
    progressive.refresh_from_db()
    assert memory_runtime.endpoints["iris-prod"].traffic[progressive.resources["revision"]] == 50
    report(memory_runtime, progressive, ok=100, at=progressive.rollout_next_at)
    assert rollout_check(deployment_id=progressive.pk, now=later(progressive, 30)) == "50% -> 100%"
    progressive.refresh_from_db()
    stable.refresh_from_db()
    assert (progressive.rollout_status, progressive.traffic_percent) == (RolloutStatus.COMPLETE, 100)
    assert stable.status == DeploymentStatus.SUPERSEDED
    assert memory_runtime.endpoints["iris-prod"].traffic == {progressive.resources["revision"]: 100}
    assert [step["step"] for step in progressive.steps][-3:] == ["rollout_10", "rollout_50", "rollout_100"]
    assert "Healthy at 50%" in progressive.steps[-1]["message"]
    assert AuditEvent.objects.filter(action="deployment.rollout_complete").count() == 1
    assert rollouts_advance() == []  # nothing under way any more


def test_a_revision_answering_5xx_rolls_back_by_itself_before_its_step_is_due(rollout, memory_runtime):
    stable, progressive = rollout
    report(memory_runtime, progressive, ok=80, errors=20)
    outcome = rollout_check(deployment_id=progressive.pk, now=timezone.now())
    assert outcome.startswith("rolled back at 10%: 5xx on 20.0% of 100 requests")
    progressive.refresh_from_db()
    progressive.endpoint.refresh_from_db()
    assert progressive.rollout_status == RolloutStatus.ROLLED_BACK
    assert progressive.status == DeploymentStatus.ROLLED_BACK
    assert progressive.endpoint.live_deployment == stable
    assert memory_runtime.endpoints["iris-prod"].traffic == {stable.resources["revision"]: 100}
    assert "5xx on 20.0%" in progressive.rollout_reason
    entry = progressive.steps[-1]
    assert (entry["step"], entry["state"]) == ("rollout_rollback", "failed")
    assert "Rolled back by itself: 5xx on 20.0%" in entry["message"]
    event = AuditEvent.objects.get(action="deployment.rollout_rollback")
    assert "above 5%" in event.details["reason"] and event.details["live_again"] == stable.pk


def test_a_slow_p99_rolls_back_too(rollout, memory_runtime):
    _, progressive = rollout
    report(memory_runtime, progressive, ok=100, p99=0.9)
    assert "p99 latency 900 ms" in rollout_check(deployment_id=progressive.pk, now=timezone.now())


def test_too_few_requests_hold_the_step_and_say_so_once(rollout, memory_runtime):
    _, progressive = rollout
    # Half of them failed, but 10 requests judge nothing.
    report(
        memory_runtime, progressive, ok=5, errors=5, at=progressive.rollout_next_at - timedelta(seconds=30)
    )
    for _ in range(3):
        assert rollout_check(deployment_id=progressive.pk, now=later(progressive)) == ""
    progressive.refresh_from_db()
    assert (progressive.rollout_status, progressive.rollout_percent) == (RolloutStatus.ADVANCING, 10)
    waits = [step for step in progressive.steps if step["step"] == "rollout_10_wait"]
    assert len(waits) == 1 and "10 requests over the last 5 minutes: 20 needed" in waits[0]["message"]


def test_requests_outside_the_window_are_not_judged(rollout, memory_runtime):
    _, progressive = rollout
    report(memory_runtime, progressive, errors=100, at=timezone.now() - timedelta(minutes=10))
    assert rollout_check(deployment_id=progressive.pk, now=timezone.now()) == ""


def test_a_rollout_another_worker_holds_is_left_alone(rollout, memory_runtime):
    _, progressive = rollout
    report(memory_runtime, progressive, ok=80, errors=20)
    Deployment.objects.filter(pk=progressive.pk).update(
        rollout_claimed_until=timezone.now() + timedelta(seconds=30)
    )
    assert rollout_check(deployment_id=progressive.pk) == ""
    assert memory_runtime.runs["end_canary"] == 0
    Deployment.objects.filter(pk=progressive.pk).update(
        rollout_claimed_until=timezone.now() - timedelta(seconds=1)
    )
    assert rollout_check(deployment_id=progressive.pk).startswith("rolled back")
    assert rollout_check(deployment_id=progressive.pk) == ""  # done once
    assert memory_runtime.runs["end_canary"] == 1


def test_a_full_deploy_meanwhile_ends_the_rollout(admin, rollout, iris_version, memory_runtime):
    _, progressive = rollout
    full = deployment_request(user=admin, endpoint=progressive.endpoint, model_version=iris_version)
    deployment_run(deployment_id=full.pk)
    assert rollout_check(deployment_id=progressive.pk).startswith("ended")
    progressive.refresh_from_db()
    assert progressive.rollout_status == RolloutStatus.ENDED
    assert memory_runtime.runs["set_canary_share"] == 0 and memory_runtime.runs["end_canary"] == 0


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"steps": [50, 10, 100]}, "rollout_steps"),
        ({"steps": [10, 50]}, "rollout_steps"),
        ({"steps": [100]}, "rollout_steps"),
        ({"steps": "10,fifty,100"}, "rollout_steps"),
        ({"step_seconds": 5}, "rollout_step_seconds"),
        ({"window_seconds": 90}, "rollout_window_seconds"),
        ({"max_error_percent": 101}, "rollout_max_error_percent"),
        ({"max_p99_ms": 0}, "rollout_max_p99_ms"),
        ({"min_requests": True}, "rollout_min_requests"),
    ],
)
def test_bad_rollout_settings_are_refused_naming_the_field(given, field):
    with pytest.raises(ServiceError) as refused:
        rollout_settings(**given)
    assert refused.value.field == field


def test_unset_rollout_settings_take_the_defaults(settings):
    settings.ROLLOUT_STEPS, settings.ROLLOUT_MIN_REQUESTS = "5,20,100", 7
    made = rollout_settings(steps="1, 100")
    assert made.steps == (1, 100) and made.min_requests == 7
    assert rollout_settings().steps == (5, 20, 100)


def test_a_progressive_deploy_needs_a_live_version(admin, endpoint, iris_version, memory_runtime):
    with pytest.raises(ServiceError) as refused:
        deployment_request(
            user=admin, endpoint=endpoint, model_version=iris_version, rollout=rollout_settings()
        )
    assert refused.value.field == "traffic_percent"


def test_beat_checks_the_rollouts_every_rollout_check_seconds():
    from django.conf import settings

    from portal.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["advance-rollouts"]
    assert (entry["task"], entry["schedule"]) == ("worker.advance_rollouts", settings.ROLLOUT_CHECK_SECONDS)
    assert entry["options"]["expires"] == settings.ROLLOUT_CHECK_SECONDS
    app.loader.import_default_modules()
    assert "worker.advance_rollouts" in app.tasks


def test_the_task_judges_every_rollout_under_way(rollout, memory_runtime):
    from worker import tasks

    _, progressive = rollout
    report(memory_runtime, progressive, ok=50, errors=50)
    reason = "5xx on 50.0% of 100 requests over the last 5 minutes, above 5%"
    assert tasks.advance_rollouts() == [f"{progressive.pk}: rolled back at 10%: {reason}"]


def test_a_progressive_deploy_that_fails_says_its_rollout_never_began(
    client, admin, endpoint, iris_version, memory_runtime
):
    from django.urls import reverse

    from worker.runtimes.base import PermanentError

    stable = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deployment_run(deployment_id=stable.pk)
    memory_runtime.fail("revision", PermanentError("the revision never got ready"))
    failed = deployment_request(
        user=admin, endpoint=endpoint, model_version=iris_version, rollout=rollout_settings(**SETTINGS)
    )
    assert deployment_run(deployment_id=failed.pk) == DeploymentStatus.FAILED
    client.force_login(admin)
    card = client.get(reverse("endpoints:deployment-rollout", args=[failed.pk])).content.decode()
    assert "Not started" in card and "hx-get" not in card
    assert rollouts_advance() == []


def test_a_stop_and_a_start_meanwhile_end_the_rollout(admin, rollout, memory_runtime):
    from endpoints.services.lifecycle import endpoint_start, endpoint_stop

    _, progressive = rollout
    endpoint = progressive.endpoint
    deployment_run(deployment_id=endpoint_stop(user=admin, endpoint=endpoint).pk)
    endpoint.refresh_from_db()
    deployment_run(deployment_id=endpoint_start(user=admin, endpoint=endpoint).pk)
    report(memory_runtime, progressive, ok=100)
    assert rollout_check(deployment_id=progressive.pk, now=later(progressive)).startswith("ended")
    assert memory_runtime.runs["set_canary_share"] == 0
