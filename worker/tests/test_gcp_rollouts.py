"""Progressive deploys on RUNTIME=gcp: the portal's rollout engine against the fake Google servers.

Cloud Run's traffic is moved by revision name (UpdateService, waited for through its operation);
the guard reads the new revision's request_count and request_latencies from the fake Monitoring
server, into which each test writes the minutes Cloud Run would have written.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from endpoints.models import AuditEvent, Deployment, DeploymentStatus, RolloutStatus
from endpoints.services.deployments import deployment_request
from endpoints.services.operations import deployment_run
from endpoints.services.rollouts import rollout_check, rollout_settings
from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import PROJECT

SERVICE = f"projects/{PROJECT}/locations/us-central1/services/iris-prod"


@pytest.fixture
def fast(gcp_settings):
    gcp_settings.GCP_RETRY_INITIAL_SECONDS = 0.001
    gcp_settings.GCP_POLL_INTERVAL_SECONDS = 0.001
    return gcp_settings


@pytest.fixture
def rollout(fast, fakes, admin, endpoint, iris_version):
    """(stable, progressive): iris live on Cloud Run, then a progressive deploy at its first step."""
    stable = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    assert deployment_run(deployment_id=stable.pk) == DeploymentStatus.READY
    progressive = deployment_request(
        user=admin,
        endpoint=endpoint,
        model_version=iris_version,
        rollout=rollout_settings(
            steps=[10, 50, 100],
            step_seconds=60,
            window_seconds=60,
            max_error_percent=5.0,
            max_p99_ms=800,
            min_requests=20,
        ),
    )
    assert deployment_run(deployment_id=progressive.pk) == DeploymentStatus.READY
    stable.refresh_from_db()
    progressive.refresh_from_db()
    fakes.clear_calls()
    return stable, progressive


def served(fakes) -> dict[str, int]:
    """What Cloud Run serves now: percent by revision."""
    return {
        status.revision: status.percent
        for status in fakes.run.services[SERVICE].traffic_statuses
        if status.percent
    }


def asked(fakes) -> list[list[tuple[str, int]]]:
    """The traffic of each UpdateService the engine sent."""
    return [
        [(t.revision, t.percent) for t in request.service.traffic]
        for request in fakes.run.requests("UpdateService")
    ]


def write_minute(fakes, revision: str, *, at, ok: int, errors: int = 0, slow: int = 0) -> None:
    """A minute of the revision as Cloud Run writes it to Cloud Monitoring, ending at `at`."""
    end = at.timestamp()
    monitoring = fakes.monitoring
    monitoring.write_requests(service="iris-prod", revision=revision, at=end, count=ok)
    if errors:
        monitoring.write_requests(service="iris-prod", revision=revision, at=end, count=errors, code=503)
    monitoring.write_latencies(
        service="iris-prod",
        revision=revision,
        at=end,
        milliseconds=[3.0] * (ok + errors - slow) + [2000.0] * slow,
    )


def test_the_first_step_splits_cloud_run_traffic_by_revision_name(rollout, fakes):
    stable, progressive = rollout
    assert served(fakes) == {progressive.resources["revision"]: 10, stable.resources["revision"]: 90}
    assert progressive.rollout_status == RolloutStatus.ADVANCING


def test_a_revision_answering_5xx_is_rolled_back_by_itself_on_cloud_run(rollout, fakes):
    stable, progressive = rollout
    now = timezone.now()
    write_minute(fakes, progressive.resources["revision"], at=now - timedelta(seconds=5), ok=30, errors=10)

    outcome = rollout_check(deployment_id=progressive.pk, now=now)

    assert outcome.startswith("rolled back at 10%: 5xx on 25.0% of 40 requests over the last minute")
    (series, _latencies) = fakes.monitoring.requests("ListTimeSeries")
    assert series.aggregation.alignment_period == timedelta(seconds=60)
    assert (series.interval.start_time, series.interval.end_time) == (now - timedelta(seconds=60), now)
    assert asked(fakes) == [[(stable.resources["revision"], 100)]]
    assert served(fakes) == {stable.resources["revision"]: 100}
    progressive.refresh_from_db()
    assert (progressive.rollout_status, progressive.status) == (
        RolloutStatus.ROLLED_BACK,
        DeploymentStatus.ROLLED_BACK,
    )
    assert progressive.endpoint.live_deployment_id == stable.pk
    assert "Rolled back by itself: 5xx on 25.0%" in progressive.steps[-1]["message"]
    assert f"{SERVICE} serves {stable.resources['revision']} 100%." in progressive.steps[-1]["message"]
    assert "above 5%" in AuditEvent.objects.get(action="deployment.rollout_rollback").details["reason"]


def test_a_slow_revision_is_rolled_back_on_its_p99(rollout, fakes):
    _, progressive = rollout
    now = timezone.now()
    write_minute(fakes, progressive.resources["revision"], at=now - timedelta(seconds=5), ok=100, slow=5)
    assert "p99 latency" in rollout_check(deployment_id=progressive.pk, now=now)


def test_a_healthy_revision_takes_every_step_on_cloud_run(rollout, fakes):
    stable, progressive = rollout
    new, old = progressive.resources["revision"], stable.resources["revision"]
    now = progressive.rollout_next_at + timedelta(seconds=1)
    write_minute(fakes, new, at=now - timedelta(seconds=5), ok=40)
    assert rollout_check(deployment_id=progressive.pk, now=now) == "10% -> 50%"
    assert served(fakes) == {new: 50, old: 50}

    progressive.refresh_from_db()
    assert (
        rollout_check(deployment_id=progressive.pk, now=progressive.rollout_next_at - timedelta(seconds=1))
        == ""
    )
    now = progressive.rollout_next_at + timedelta(seconds=1)
    write_minute(fakes, new, at=now - timedelta(seconds=5), ok=200)
    assert rollout_check(deployment_id=progressive.pk, now=now) == "50% -> 100%"
    assert served(fakes) == {new: 100}
    assert asked(fakes) == [[(new, 50), (old, 50)], [(new, 100)]]
    progressive.refresh_from_db()
    assert (progressive.rollout_status, progressive.traffic_percent) == (RolloutStatus.COMPLETE, 100)
    assert Deployment.objects.get(pk=stable.pk).status == DeploymentStatus.SUPERSEDED
    assert [
        e.details["percent"]
        for e in AuditEvent.objects.filter(action__startswith="deployment.rollout_").order_by("pk")
    ] == [10, 50, 100]


def test_too_few_requests_on_cloud_run_hold_the_step(rollout, fakes):
    _, progressive = rollout
    now = progressive.rollout_next_at + timedelta(seconds=1)
    write_minute(fakes, progressive.resources["revision"], at=now - timedelta(seconds=5), ok=5, errors=5)
    assert rollout_check(deployment_id=progressive.pk, now=now) == ""
    assert fakes.run.requests("UpdateService") == []
    progressive.refresh_from_db()
    assert progressive.rollout_percent == 10 and "20 needed to judge" in progressive.steps[-1]["message"]
