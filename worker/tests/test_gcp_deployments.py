"""A deployment run by the portal's own service layer on RUNTIME=gcp, against the fake Google servers."""

import grpc
import pytest

from endpoints.models import Deployment, DeploymentStatus
from endpoints.services.deployments import deployment_request
from endpoints.services.operations import deployment_run
from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import BUCKET, PROJECT, make_spec
from worker.runtimes import get_runtime
from worker.runtimes.base import PermanentError, TransientError
from worker.runtimes.gcp.doctor import PROJECT_ROLES
from worker.runtimes.gcp.runtime import GcpRuntime

SERVICE = f"projects/{PROJECT}/locations/us-central1/services/iris-prod"


@pytest.fixture
def fast(gcp_settings):
    gcp_settings.GCP_RETRY_INITIAL_SECONDS = 0.001
    gcp_settings.GCP_POLL_INTERVAL_SECONDS = 0.001
    return gcp_settings


def test_runtime_gcp_picks_the_google_runtime(gcp_settings):
    assert isinstance(get_runtime(), GcpRuntime)


def test_a_deployment_goes_live_on_cloud_run_and_journals_each_step(
    fast, fakes, admin, endpoint, iris_version
):
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)

    assert deployment_run(deployment_id=deployment.pk) == DeploymentStatus.READY

    deployment.refresh_from_db()
    endpoint.refresh_from_db()
    assert [(step["step"], step["state"]) for step in deployment.steps] == [
        ("preconditions", "done"),
        ("service_account", "done"),
        ("artifact", "done"),
        ("revision", "done"),
        ("revision_ready", "done"),
        ("invoker", "done"),
        ("gateway_config", "done"),
        ("gateway_config_ready", "done"),
        ("managed_service", "done"),
        ("managed_service_ready", "done"),
        ("gateway", "done"),
        ("gateway_ready", "done"),
        ("prune_configs", "done"),
    ]
    assert all("seconds" in step for step in deployment.steps)
    assert deployment.resources["api_config_id"] == f"iris-prod-d{deployment.pk}"
    assert endpoint.gateway_url == deployment.resources["gateway_url"]
    assert endpoint.gateway_url.startswith("https://iris-prod-") and endpoint.gateway_url.endswith(
        ".gateway.dev"
    )
    assert deployment.resources["revision"] == f"iris-prod-d{deployment.pk}"
    assert endpoint.url == deployment.resources["url"]
    assert endpoint.url.endswith(".a.run.app")
    assert fakes.run.revision_ids(SERVICE) == [f"iris-prod-d{deployment.pk}"]


def test_a_deploy_that_stopped_between_steps_resumes_without_repeating_work(
    fast, fakes, admin, endpoint, iris_version
):
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    fakes.run.fail_next(3, grpc.StatusCode.UNAVAILABLE, method="GetIamPolicy")

    with pytest.raises(TransientError):
        deployment_run(deployment_id=deployment.pk)
    assert Deployment.objects.get(pk=deployment.pk).steps[-1]["state"] == "retrying"

    assert deployment_run(deployment_id=deployment.pk) == DeploymentStatus.READY

    assert fakes.run.methods().count("UpdateService") == 1
    assert fakes.storage.methods().count("POST /upload/storage/v1/b/portal-artifacts/o") == 1
    assert fakes.run.revision_ids(SERVICE) == [f"iris-prod-d{deployment.pk}"]
    assert fakes.run.methods().count("SetIamPolicy") == 1


def test_a_revision_that_fails_fails_the_deployment_with_cloud_runs_message(
    fast, fakes, admin, endpoint, iris_version
):
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    fakes.run.fail_revision(f"iris-prod-d{deployment.pk}", "Container called exit(1).")

    assert deployment_run(deployment_id=deployment.pk) == DeploymentStatus.FAILED

    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.FAILED
    assert "Container called exit(1)." in deployment.error
    assert deployment.error.startswith("Wait for the revision to be ready: ")


def test_an_allowlist_endpoint_goes_live_behind_its_load_balancer_and_follows_allowlist_edits(
    fast, fakes, admin, iris_version
):
    from endpoints.services.access import access_apply
    from endpoints.services.allowlist import allowlist_add
    from endpoints.services.endpoints import endpoint_create

    endpoint = endpoint_create(user=admin, name="fraud", access_mode="ip_allowlist")
    allowlist_add(user=admin, endpoint=endpoint, cidr="198.51.100.0/24")
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)

    assert deployment_run(deployment_id=deployment.pk) == DeploymentStatus.READY

    endpoint.refresh_from_db()
    assert endpoint.url == "https://fraud.models.example.com"
    assert endpoint.gateway_url == ""
    service = fakes.run.service(f"projects/{PROJECT}/locations/us-central1/services/fraud")
    assert service.ingress.name == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"

    for index in range(11):
        allowlist_add(user=admin, endpoint=endpoint, cidr=f"203.0.113.{index}/32")
    access_apply(endpoint_id=endpoint.pk)

    portal = [
        r for r in fakes.compute.rules("fraud-allowlist").values() if r["description"] == "portal allowlist"
    ]
    assert sorted(len(r["match"]["config"]["srcIpRanges"]) for r in portal) == [2, 10]


def test_a_key_request_is_issued_as_a_google_key_and_revoked_by_deleting_it(
    fast, fakes, admin, member, team, endpoint, iris_version
):
    from endpoints.models import ApiKey
    from endpoints.sealing import key_hash
    from endpoints.services.keys import (
        api_key_revoke,
        api_key_revoke_at_runtime,
        key_request_approve,
        key_request_create,
        key_request_issue,
    )

    deployment_run(
        deployment_id=deployment_request(user=admin, endpoint=endpoint, model_version=iris_version).pk
    )
    request = key_request_create(user=member, team=team, endpoint=endpoint, reason="Scoring loans nightly")
    key_request_approve(user=admin, request=request)

    key_request_issue(request_id=request.pk)

    key = ApiKey.objects.get(request=request)
    (google_key,) = fakes.keys.live_keys()
    assert key.cloud_name == google_key.name
    assert key.key_hash == key_hash(fakes.keys.strings[google_key.name])
    assert [t.service for t in google_key.restrictions.api_targets] == [
        Deployment.objects.get(endpoint=endpoint).resources["managed_service"]
    ]

    api_key_revoke(user=admin, key=key)
    api_key_revoke_at_runtime(key_id=key.pk)

    assert fakes.keys.live_keys() == []


def test_a_deploy_to_a_fresh_project_fails_before_making_anything_naming_each_fix(
    fast, fakes, admin, endpoint, iris_version
):
    fakes.fresh()
    before = fakes.held()
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)

    assert deployment_run(deployment_id=deployment.pk) == DeploymentStatus.FAILED

    deployment.refresh_from_db()
    assert [(step["step"], step["state"]) for step in deployment.steps] == [("preconditions", "failed")]
    assert deployment.error.startswith(f"Check the Google Cloud project: project {PROJECT} is not ready")
    for fix in (
        f"gcloud services enable run.googleapis.com --project={PROJECT}",
        f"gcloud services enable iam.googleapis.com --project={PROJECT}",
        f"gcloud storage buckets create gs://{BUCKET}",
    ):
        assert fix in deployment.error
    assert fakes.held() == before  # nothing made, nothing to clean up


def test_planning_on_a_fresh_project_shows_each_failed_check_with_its_fix(gcp, fakes, artifact):
    fakes.fresh()

    changes = [change for change in gcp.plan(make_spec(artifact)) if change.step == "preconditions"]

    assert changes and all(change.action == "error" for change in changes)
    assert any(
        change.detail == "API run.googleapis.com: run.googleapis.com is not enabled "
        f"(fix: gcloud services enable run.googleapis.com --project={PROJECT})"
        for change in changes
    )


def test_a_project_that_lacks_only_what_the_charts_and_logs_read_deploys(gcp, fakes, artifact):
    """Monitoring and Logging are read by the endpoint page, not by a deploy: their checks name
    the fix (the doctor, the plan) and stop nothing."""
    fakes.project.disabled.add("monitoring.googleapis.com")
    fakes.projects.permissions.revoke_all()
    fakes.projects.permissions.grant(
        *[
            permission
            for role, held in PROJECT_ROLES.items()
            if role != "roles/logging.viewer"
            for permission in held
        ]
    )
    (step,) = [step for step in gcp.deploy_steps(make_spec(artifact)) if step.name == "preconditions"]

    assert step.run({}).message.startswith("The project is ready")
    warnings = {change.detail for change in gcp.plan(make_spec(artifact)) if change.action == "warning"}
    assert warnings == {
        "API monitoring.googleapis.com: monitoring.googleapis.com is not enabled; the endpoint page's "
        "charts stay empty until it is (deploys do not need it) "
        f"(fix: gcloud services enable monitoring.googleapis.com --project={PROJECT})",
        "Role roles/logging.viewer: missing logging.logEntries.list (the endpoint page's logs read with "
        "it; deploys do not need it) (fix: gcloud projects add-iam-policy-binding "
        f"{PROJECT} --member=PRINCIPAL --role=roles/logging.viewer)",
    }


def test_a_project_found_ready_is_trusted_for_the_setting_then_checked_again(gcp, fakes, artifact, clock):
    (step,) = [step for step in gcp.deploy_steps(make_spec(artifact)) if step.name == "preconditions"]
    assert step.run({}).message.startswith("The project is ready")
    asked = sum(map(len, fakes.methods().values()))
    assert asked >= 5
    fakes.clear_calls()
    fakes.fresh()

    assert step.run({}).message == "The project was found ready a moment ago."
    assert sum(map(len, fakes.methods().values())) == 0

    clock.now += gcp.ctx.cfg.ready_check_seconds
    with pytest.raises(PermanentError, match="not ready"):
        step.run({})
