"""Stopping, starting and deleting an endpoint: journaled operations like a deploy."""

import pytest
from rest_framework.test import APIClient

from endpoints.models import (
    ApiKey,
    ApiKeyRequest,
    AuditEvent,
    Deployment,
    DeploymentAction,
    DeploymentStatus,
    Endpoint,
    KeyRequestStatus,
    OwedTask,
)
from endpoints.services import ServiceError
from endpoints.services.allowlist import allowlist_add
from endpoints.services.deployments import deployment_request, endpoints_revive
from endpoints.services.endpoints import endpoint_create
from endpoints.services.keys import key_request_approve, key_request_create
from endpoints.services.lifecycle import endpoint_delete, endpoint_start, endpoint_stop, lifecycle_plan
from endpoints.services.operations import deployment_run
from portal import queue
from worker.runtimes.base import PermanentError


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def live(admin, endpoint, iris_version, memory_runtime):
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    assert deployment_run(deployment_id=deployment.pk) == DeploymentStatus.READY
    endpoint.refresh_from_db()
    return deployment


def run(operation: Deployment) -> Deployment:
    deployment_run(deployment_id=operation.pk)
    operation.refresh_from_db()
    return operation


def test_a_stopped_endpoint_serves_nothing_is_not_revived_and_starts_again(
    admin, endpoint, live, memory_runtime
):
    stop = run(endpoint_stop(user=admin, endpoint=endpoint))

    assert (stop.action, stop.status, stop.model_version_id) == ("stop", "done", live.model_version_id)
    assert [step["state"] for step in stop.steps] == ["done"]
    endpoint.refresh_from_db()
    assert endpoint.serving_state == "stopped" and endpoint.live_deployment_id == live.pk
    assert memory_runtime.endpoints["iris-prod"].up is False
    assert endpoints_revive() == []  # reconcile leaves a stopped endpoint stopped
    assert memory_runtime.endpoints["iris-prod"].up is False

    start = run(endpoint_start(user=admin, endpoint=endpoint))

    assert start.status == "done"
    endpoint.refresh_from_db()
    assert endpoint.serving_state == "serving"
    assert memory_runtime.endpoints["iris-prod"].up is True
    actions = list(AuditEvent.objects.filter(action__startswith="endpoint.").values_list("action", flat=True))
    assert set(actions) >= {"endpoint.stop", "endpoint.stop_done", "endpoint.start", "endpoint.start_done"}


def test_stop_and_start_are_refused_when_they_mean_nothing(admin, endpoint, memory_runtime):
    with pytest.raises(ServiceError, match="Nothing is live on iris-prod"):
        endpoint_stop(user=admin, endpoint=endpoint)
    with pytest.raises(ServiceError, match="deploy a version instead"):
        endpoint_start(user=admin, endpoint=endpoint)
    assert not Deployment.objects.exists()


def test_one_operation_at_a_time(admin, endpoint, live, iris_version):
    endpoint_stop(user=admin, endpoint=endpoint)

    with pytest.raises(ServiceError, match=r"already has a stop in progress \(stop \d+, queued\)"):
        deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    with pytest.raises(ServiceError, match="already has a stop in progress"):
        endpoint_delete(user=admin, endpoint=endpoint, confirm="iris-prod")


def test_a_deploy_on_a_stopped_endpoint_serves_again(admin, endpoint, live, iris_version, memory_runtime):
    run(endpoint_stop(user=admin, endpoint=endpoint))

    run(deployment_request(user=admin, endpoint=endpoint, model_version=iris_version))

    endpoint.refresh_from_db()
    assert endpoint.serving_state == "serving" and endpoint.live_deployment_id != live.pk


def test_a_team_member_can_neither_stop_nor_delete(member, endpoint, live):
    with pytest.raises(ServiceError, match="Only an admin"):
        endpoint_stop(user=member, endpoint=endpoint)
    with pytest.raises(ServiceError, match="Only an admin"):
        endpoint_delete(user=member, endpoint=endpoint, confirm="iris-prod")


def test_a_delete_needs_the_name_typed_again(admin, endpoint, live):
    with pytest.raises(ServiceError, match="Type the endpoint's name, iris-prod, to confirm.") as refused:
        endpoint_delete(user=admin, endpoint=endpoint, confirm="iris")
    assert refused.value.field == "confirm"
    assert not Deployment.objects.filter(action=DeploymentAction.DELETE).exists()


def test_deleting_revokes_keys_refuses_open_requests_keeps_records_and_frees_the_name(
    admin, member, team, endpoint, live, memory_runtime
):
    issued = key_request_create(user=member, team=team, endpoint=endpoint, reason="Nightly scoring job")
    key_request_approve(user=admin, request=issued)
    from endpoints.services.keys import key_request_issue

    key_request_issue(request_id=issued.pk)
    waiting = key_request_create(user=member, team=team, endpoint=endpoint, reason="A second batch job")
    key = ApiKey.objects.get(request=issued)

    delete = run(endpoint_delete(user=admin, endpoint=endpoint, confirm="iris-prod"))

    assert (delete.action, delete.status) == ("delete", "done")
    endpoint.refresh_from_db()
    assert endpoint.serving_state == "deleted" and endpoint.live_deployment is None and endpoint.url == ""
    assert "iris-prod" not in memory_runtime.endpoints
    assert key.cloud_name not in memory_runtime.keys
    key.refresh_from_db()
    assert key.revoked_at is not None
    waiting.refresh_from_db()
    assert (
        waiting.status == KeyRequestStatus.REJECTED and waiting.decision_note == "The endpoint was deleted."
    )
    assert ApiKeyRequest.objects.get(pk=issued.pk).sealed_secret == ""
    live.refresh_from_db()
    assert live.status == DeploymentStatus.SUPERSEDED
    assert not OwedTask.objects.exclude(task=queue.DEPLOY).filter(object_id=endpoint.pk).exists()
    assert AuditEvent.objects.filter(action="endpoint.delete_done", target_id=str(delete.pk)).exists()
    # The records stay; the name is free for a new endpoint.
    assert Deployment.objects.filter(endpoint=endpoint).count() == 2
    again = endpoint_create(user=admin, name="iris-prod")
    assert again.pk != endpoint.pk
    assert list(Endpoint.objects.for_user(admin).values_list("pk", flat=True)) == [again.pk]


def test_changes_to_an_endpoint_being_deleted_are_refused(admin, member, team, endpoint, live):
    endpoint_delete(user=admin, endpoint=endpoint, confirm="iris-prod")

    with pytest.raises(ServiceError, match="is being deleted"):
        allowlist_add(user=admin, endpoint=endpoint, cidr="203.0.113.0/24")
    with pytest.raises(ServiceError, match="is being deleted"):
        key_request_create(user=member, team=team, endpoint=endpoint, reason="Nightly scoring job")
    with pytest.raises(ServiceError, match="is being deleted; its name is free once the delete is done"):
        endpoint_create(user=admin, name="iris-prod")


def test_a_failed_delete_leaves_the_endpoint_and_a_second_one_finishes(admin, endpoint, live, memory_runtime):
    memory_runtime.fail("delete", PermanentError("the cloud refused"))

    failed = run(endpoint_delete(user=admin, endpoint=endpoint, confirm="iris-prod"))

    assert failed.status == DeploymentStatus.FAILED and "the cloud refused" in failed.error
    endpoint.refresh_from_db()
    assert endpoint.deleted_at is None and endpoint.serving_state == "serving"
    assert AuditEvent.objects.filter(action="endpoint.delete_failed").exists()

    assert run(endpoint_delete(user=admin, endpoint=endpoint, confirm="iris-prod")).status == "done"


def test_plans_say_what_each_operation_would_change(admin, endpoint, live, memory_runtime):
    assert [c.action for c in lifecycle_plan(user=admin, endpoint=endpoint, action="stop")] == ["update"]
    with pytest.raises(ServiceError, match="is not stopped"):
        lifecycle_plan(user=admin, endpoint=endpoint, action="start")
    [change] = lifecycle_plan(user=admin, endpoint=endpoint, action="delete")
    assert (change.step, change.action) == ("delete", "delete")
    assert not Deployment.objects.exclude(pk=live.pk).exists()  # planning writes nothing


def test_the_api_stops_starts_plans_and_deletes(admin, endpoint, live, memory_runtime):
    client = api(admin)
    stopped = client.post("/api/v1/endpoints/iris-prod/stop/")
    assert stopped.status_code == 202 and stopped.json()["action"] == "stop"
    assert stopped["Location"].endswith(f"/api/v1/deployments/{stopped.json()['id']}/")
    assert client.post("/api/v1/endpoints/iris-prod/stop/").status_code == 409
    deployment_run(deployment_id=stopped.json()["id"])
    assert client.get("/api/v1/endpoints/iris-prod/").json()["serving_state"] == "stopped"
    started = client.post("/api/v1/endpoints/iris-prod/start/")
    assert started.status_code == 202
    deployment_run(deployment_id=started.json()["id"])

    plan = client.post("/api/v1/endpoints/iris-prod/plan/", {"action": "delete"}, format="json")
    assert plan.status_code == 200 and plan.json()["changes"][0]["action"] == "delete"
    no_version = client.post("/api/v1/endpoints/iris-prod/plan/", {}, format="json")
    assert no_version.status_code == 422 and no_version.json()["field"] == "model_version"

    unconfirmed = client.delete("/api/v1/endpoints/iris-prod/")
    assert unconfirmed.status_code == 422 and unconfirmed.json()["field"] == "confirm"
    wrong = client.delete("/api/v1/endpoints/iris-prod/", {"confirm": "iris"}, format="json")
    assert wrong.status_code == 422 and wrong.json()["field"] == "confirm"
    deleting = client.delete("/api/v1/endpoints/iris-prod/?confirm=iris-prod")
    assert deleting.status_code == 202 and deleting.json()["action"] == "delete"
    deployment_run(deployment_id=deleting.json()["id"])

    assert client.get("/api/v1/endpoints/iris-prod/").status_code == 404
    history = client.get(f"/api/v1/deployments/{deleting.json()['id']}/")
    assert history.status_code == 200 and history.json()["status"] == "done"
