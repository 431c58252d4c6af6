"""Restoring, expiring and planning through the portal's services on RUNTIME=gcp, against the fakes."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from endpoints.models import ApiKey, AuditEvent, Deployment
from endpoints.services.deployments import deployment_plan
from endpoints.services.keys import (
    api_key_restore,
    api_key_restore_at_runtime,
    api_key_reveal,
    api_key_revoke,
    api_key_revoke_at_runtime,
    api_keys_expire,
    key_request_approve,
    key_request_create,
    key_request_issue,
)
from tests.fakes.fixtures import *  # noqa: F403
from worker import tasks

# What a plan must never send: every mutating method of the gRPC APIs it talks to.
GRPC_WRITES = {
    "UpdateService", "CreateService", "DeleteService", "SetIamPolicy", "CreateApi", "CreateApiConfig",
    "CreateGateway", "UpdateGateway", "DeleteGateway", "EnableService", "CreateKey", "DeleteKey",
    "UndeleteKey", "UpdateKey", "CreateServiceAccount",
}  # fmt: skip


@pytest.fixture
def fast(gcp_settings):
    gcp_settings.GCP_RETRY_INITIAL_SECONDS = 0.001
    gcp_settings.GCP_POLL_INTERVAL_SECONDS = 0.001
    return gcp_settings


@pytest.fixture
def key(fast, fakes, admin, member, team, endpoint) -> ApiKey:
    request = key_request_create(
        user=member, team=team, endpoint=endpoint, reason="Nightly scoring of the iris catalogue"
    )
    key_request_approve(user=admin, request=request)
    key_request_issue(request_id=request.pk)
    api_key_reveal(user=member, request=request)  # the team took it: a key in use
    key = ApiKey.objects.get(request=request)
    assert [k.name for k in fakes.keys.live_keys()] == [key.cloud_name]
    return key


def test_a_revoke_undone_in_the_portal_brings_the_google_key_back(admin, key, fakes):
    api_key_revoke(user=admin, key=key)
    api_key_revoke_at_runtime(key_id=key.pk)
    assert fakes.keys.live_keys() == []

    api_key_restore(user=admin, key=key)
    tasks.restore_key.run(key.pk)

    assert [k.name for k in fakes.keys.live_keys()] == [key.cloud_name]
    assert fakes.keys.methods().count("UndeleteKey") == 1


def test_a_restore_that_overtakes_the_revoke_task_leaves_the_google_key_alone(admin, key, fakes):
    api_key_revoke(user=admin, key=key)
    api_key_restore(user=admin, key=key)
    fakes.clear_calls()

    api_key_restore_at_runtime(key_id=key.pk)  # Google never saw the revoke: nothing to undelete
    api_key_revoke_at_runtime(key_id=key.pk)  # the late revoke task finds the key restored

    assert [k.name for k in fakes.keys.live_keys()] == [key.cloud_name]
    assert "DeleteKey" not in fakes.keys.methods()
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None


def test_an_expired_key_is_deleted_at_google_since_google_keys_never_expire(key, fakes):
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert api_keys_expire() == [key.pk]
    tasks.revoke_key.run(key.pk)  # what the enqueued worker.revoke_key does

    assert fakes.keys.live_keys() == []
    assert fakes.keys.key(key.cloud_name).delete_time
    assert AuditEvent.objects.filter(action="api_key.expire", actor=None).count() == 1


def test_planning_a_deploy_through_the_portal_writes_no_row_and_calls_nothing_that_changes(
    fast, fakes, admin, endpoint, iris_version
):
    audit_before = AuditEvent.objects.count()

    changes = deployment_plan(user=admin, endpoint=endpoint, model_version=iris_version)

    assert [c.step for c in changes][:5] == [
        "preconditions",
        "service_account",
        "artifact",
        "artifact",
        "revision",
    ]
    assert Deployment.objects.count() == 0 and AuditEvent.objects.count() == audit_before
    grpc_calls = (
        fakes.run.methods()
        + fakes.gateway.methods()
        + fakes.usage.methods()
        + fakes.keys.methods()
        + fakes.iam.methods()
    )
    writes = [m for m in grpc_calls if m in GRPC_WRITES and m != "UpdateService"]
    assert writes == []
    assert all(request.validate_only for request in fakes.run.requests("UpdateService"))
    assert [m for m in fakes.storage.methods() + fakes.compute.methods() if not m.startswith("GET ")] == []
    assert fakes.run.services == {} and fakes.gateway.apis == {}


def test_the_plan_api_answers_with_the_gcp_changes(fast, fakes, admin, endpoint, iris_version):
    client = APIClient()
    client.force_authenticate(admin)

    response = client.post(
        f"/api/v1/endpoints/{endpoint.name}/plan/", {"model_version": iris_version.pk}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["endpoint"], body["runtime"], body["traffic_percent"]) == (endpoint.name, "gcp", 100)
    assert ("gateway", "create") in {(c["step"], c["action"]) for c in body["changes"]}
    assert Deployment.objects.count() == 0
