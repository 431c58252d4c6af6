"""Load tests: a real Locust child process against a real local serving process on loopback (a few
seconds, two users), the key made for the test and revoked after, the caps and refusals, a test
whose worker died, cancelling, and the locustfile a person downloads."""

import ast
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from endpoints.models import (
    AccessMode,
    ApiKey,
    AuditEvent,
    Deployment,
    DeploymentStatus,
    Endpoint,
    LoadTest,
    LoadTestStatus,
    OwedTask,
    TrafficRollup,
)
from endpoints.services.access import access_policy_for
from endpoints.services.deployments import deployment_request
from endpoints.services.endpoints import endpoint_create
from endpoints.services.errors import NotAllowed, ServiceError
from endpoints.services.keys import load_test_key_issue
from endpoints.services.load_tests import (
    load_test_cancel,
    load_test_run,
    load_test_start,
    locustfile_for,
)
from endpoints.services.operations import deployment_run
from endpoints.services.traffic import traffic_scrape
from endpoints.tests.test_playground import module_runtime_dir, runtime_dir, version  # noqa: F401 (fixtures)
from portal import queue
from worker import tasks


def serve(admin, model_version, *, name: str, access_mode: str = "api_key"):
    endpoint = endpoint_create(user=admin, name=name, access_mode=access_mode)
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=model_version)
    assert deployment_run(deployment_id=deployment.pk) == "ready"
    endpoint.refresh_from_db()
    tasks.apply_access.run(endpoint.pk)
    return endpoint


@pytest.fixture
def served(runtime_dir, admin, version, sent):  # noqa: F811
    """`iris-load`, checking keys, served by a real local process on loopback."""
    return serve(admin, version, name="iris-load")


@pytest.fixture
def memory_served(memory_runtime, admin, iris_version, endpoint, sent):
    """`iris-prod` on the memory runtime: live and serving, nothing runs (for refusals and records)."""
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    assert deployment_run(deployment_id=deployment.pk) == "ready"
    endpoint.refresh_from_db()
    return endpoint


def start(admin, endpoint, **figures):
    return load_test_start(
        user=admin,
        endpoint=endpoint,
        **{"users": 2, "spawn_rate": 2, "duration_seconds": 3, **figures},
    )


@pytest.mark.integration
def test_a_load_test_measures_the_endpoint_with_its_own_key_and_revokes_it_after(served, admin, sent):
    test = start(admin, served)
    assert OwedTask.objects.filter(task=queue.RUN_LOAD_TEST, object_id=test.pk).exists()

    assert load_test_run(test_id=test.pk) == LoadTestStatus.DONE

    test.refresh_from_db()
    summary = test.summary
    assert summary["requests"] > 0
    assert summary["failures"] == 0, summary["failures_by_reason"]  # the test's key was let in
    assert summary["p50"] is not None and summary["p50"] <= summary["p95"] <= summary["p99"]
    assert len(test.timeseries) >= 2
    assert sum(point["requests"] for point in test.timeseries) <= summary["requests"]
    assert test.timeseries[-1]["users"] == 2
    # The serving process itself counted them: the test's requests reached the endpoint and were answered.
    assert traffic_scrape() == 1
    answered = TrafficRollup.objects.filter(endpoint=served, span=1).aggregate(ok=Sum("ok"))["ok"]
    assert answered >= summary["requests"]
    key = test.api_key
    assert key is not None and key.team is None and key.revoked_at is not None
    assert [record.revoked for record in access_policy_for(served).keys if record.prefix == key.prefix] == [
        True
    ]
    assert OwedTask.objects.filter(task=queue.REVOKE_KEY, object_id=key.pk).exists()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"load_test.start", "load_test.finish", "api_key.issue", "api_key.revoke"} <= actions


@pytest.mark.integration
def test_failures_are_counted_by_reason(runtime_dir, admin, version, sent):  # noqa: F811
    """An endpoint whose allowlist lets nobody in refuses every request: each is a failure, and
    the reason says why, in the endpoint's words."""
    endpoint = serve(admin, version, name="iris-shut", access_mode="ip_allowlist")
    test = start(admin, endpoint, users=1, spawn_rate=1, duration_seconds=2)

    assert load_test_run(test_id=test.pk) == LoadTestStatus.DONE

    summary = LoadTest.objects.get(pk=test.pk).summary
    assert summary["requests"] == summary["failures"] > 0
    reasons = {failure["reason"] for failure in summary["failures_by_reason"]}
    assert reasons and all(reason.startswith("HTTP 403") for reason in reasons), reasons
    assert sum(failure["count"] for failure in summary["failures_by_reason"]) == summary["failures"]


def test_the_caps_are_refused_all_at_once_and_nothing_is_queued(memory_served, admin, sent, settings):
    settings.LOAD_TEST_MAX_USERS, settings.LOAD_TEST_MAX_SPAWN_RATE, settings.LOAD_TEST_MAX_SECONDS = 8, 3, 20
    with pytest.raises(ServiceError) as refused:
        load_test_start(user=admin, endpoint=memory_served, users=9, spawn_rate=0, duration_seconds=21)
    problems = [refused.value, *refused.value.also]
    assert {(each.field, each.message) for each in problems} == {
        ("users", "Choose 1 to 8 users."),
        ("spawn_rate", "Choose 1 to 3 users started per second."),
        ("duration_seconds", "Choose 1 to 20 seconds."),
    }
    assert not LoadTest.objects.exists()
    assert not OwedTask.objects.filter(task=queue.RUN_LOAD_TEST).exists()


def test_a_second_test_is_refused_while_one_is_queued(memory_served, admin):
    first = start(admin, memory_served)
    with pytest.raises(ServiceError, match=f"Load test {first.pk} is already queued") as refused:
        start(admin, memory_served)
    assert refused.value.code == "conflict"


def test_a_test_is_refused_while_a_deploy_runs(memory_served, admin, iris_version):
    Deployment.objects.create(
        endpoint=memory_served, model_version=iris_version, requested_by=admin, status=DeploymentStatus.QUEUED
    )
    with pytest.raises(ServiceError, match="An operation on this endpoint is under way"):
        start(admin, memory_served)


def test_a_test_is_refused_on_an_endpoint_that_does_not_serve(memory_runtime, admin, endpoint):
    with pytest.raises(ServiceError, match="Nothing is live on this endpoint"):
        start(admin, endpoint)


def test_a_test_is_refused_on_a_stopped_endpoint(memory_served, admin):
    memory_served.stopped_at = timezone.now()
    memory_served.save(update_fields=["stopped_at"])
    with pytest.raises(ServiceError, match="This endpoint is stopped"):
        start(admin, memory_served)


def test_a_test_is_refused_on_an_endpoint_that_lets_in_only_identity_tokens(memory_served, admin):
    Endpoint.objects.filter(pk=memory_served.pk).update(access_mode=AccessMode.IDENTITY)
    memory_served.refresh_from_db()
    with pytest.raises(ServiceError, match="only bearer tokens from its identity provider"):
        start(admin, memory_served)


def test_only_an_admin_starts_or_cancels_a_test(memory_served, admin, member):
    with pytest.raises(NotAllowed):
        start(member, memory_served)
    test = start(admin, memory_served)
    with pytest.raises(NotAllowed):
        load_test_cancel(user=member, test=test)


def test_cancelling_a_queued_test_ends_it_and_the_task_then_does_nothing(memory_served, admin):
    test = start(admin, memory_served)
    load_test_cancel(user=admin, test=test)
    test.refresh_from_db()
    assert test.status == LoadTestStatus.CANCELLED and test.cancelled_by == admin
    assert load_test_run(test_id=test.pk) == LoadTestStatus.CANCELLED
    assert AuditEvent.objects.filter(action="load_test.cancel", target_id=str(test.pk)).exists()
    with pytest.raises(ServiceError, match="already cancelled"):
        load_test_cancel(user=admin, test=test)
    start(admin, memory_served)  # the endpoint is free again


def test_a_test_whose_worker_died_is_failed_and_its_key_revoked(memory_served, admin, sent):
    test = start(admin, memory_served)
    LoadTest.objects.filter(pk=test.pk).update(
        status=LoadTestStatus.RUNNING,
        started_at=timezone.now(),
        claimed_until=timezone.now() - timedelta(seconds=1),
    )
    load_test_key_issue(test=test)

    assert load_test_run(test_id=test.pk) == LoadTestStatus.FAILED

    test.refresh_from_db()
    assert "stopped before it ended" in test.error
    assert ApiKey.objects.get(pk=test.api_key_id).revoked_at is not None
    assert OwedTask.objects.filter(task=queue.REVOKE_KEY, object_id=test.api_key_id).exists()


def test_a_test_another_worker_holds_is_left_to_it(memory_served, admin):
    test = start(admin, memory_served)
    LoadTest.objects.filter(pk=test.pk).update(
        status=LoadTestStatus.RUNNING, claimed_until=timezone.now() + timedelta(seconds=30)
    )
    assert load_test_run(test_id=test.pk) == "another worker is running this load test"
    assert LoadTest.objects.get(pk=test.pk).status == LoadTestStatus.RUNNING


def test_a_load_test_key_is_neither_rotated_nor_restored(memory_served, admin, sent):
    from endpoints.services.keys import api_key_restore, api_key_rotate, load_test_key_revoke

    test = start(admin, memory_served)
    load_test_key_issue(test=test)
    key = ApiKey.objects.get(load_test=test)
    with pytest.raises(ServiceError, match="not rotated"):
        api_key_rotate(user=admin, key=key)
    load_test_key_revoke(test=test)
    with pytest.raises(ServiceError, match="not restored"):
        api_key_restore(user=admin, key=key)


def test_the_locustfile_carries_the_url_and_rows_but_no_secret(memory_served, admin, iris_version, sent):
    test = start(admin, memory_served)
    load_test_key_issue(test=test)
    text = locustfile_for(test)
    # Parsed, not imported: importing it would import Locust, which patches this process with gevent.
    assignments = {
        node.targets[0].id: node.value for node in ast.parse(text).body if isinstance(node, ast.Assign)
    }
    assert ast.literal_eval(assignments["HOST"]) == test.url == memory_served.public_url.rstrip("/")
    assert ast.literal_eval(assignments["ROWS"]) == test.rows == iris_version.example_set["rows"]
    assert 'os.environ.get("API_KEY", "")' in text
    assert test.api_key.prefix not in text


@pytest.mark.integration
def test_the_downloaded_locustfile_runs_headless_against_the_endpoint(
    runtime_dir,  # noqa: F811
    admin,
    version,  # noqa: F811
    sent,
    tmp_path,
):
    endpoint = serve(admin, version, name="iris-open", access_mode="open")
    test = start(admin, endpoint)
    response = Client()
    response.force_login(admin)
    download = response.get(f"/load-tests/{test.pk}/locustfile.py")
    assert download.status_code == 200
    assert download["Content-Disposition"] == 'attachment; filename="locustfile-iris-open.py"'
    path = tmp_path / "locustfile-iris-open.py"
    path.write_bytes(download.content)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(path),
            "--headless",
            "-u",
            "2",
            "-r",
            "2",
            "-t",
            "2s",
            "--only-summary",
            "--exit-code-on-error",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "API_KEY": ""},
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "single row" in run.stderr + run.stdout
