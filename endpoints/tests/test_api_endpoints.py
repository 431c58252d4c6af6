"""The endpoints API: create, read, change, deploy, history, roll back."""

from rest_framework.test import APIClient

from endpoints.models import AuditEvent, Deployment, DeploymentStatus, Endpoint
from endpoints.services.operations import deployment_run


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def deploy_and_finish(admin, endpoint, version) -> Deployment:
    response = api(admin).post(
        f"/api/v1/endpoints/{endpoint.name}/deploy/", {"model_version": version.pk}, format="json"
    )
    assert response.status_code == 202, response.json()
    assert deployment_run(deployment_id=response.json()["id"]) == DeploymentStatus.READY
    return Deployment.objects.get(pk=response.json()["id"])


def test_an_admin_creates_an_endpoint(admin):
    response = api(admin).post(
        "/api/v1/endpoints/",
        {"name": "churn", "description": "Churn scores", "max_instances": 5, "access_mode": "both"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "churn"
    assert body["url"] == "http://testserver/api/v1/endpoints/churn/"
    assert response["Location"] == body["url"]
    assert body["live_deployment"] is None
    endpoint = Endpoint.objects.get(name="churn")
    assert (endpoint.max_instances, endpoint.access_mode, endpoint.created_by) == (5, "both", admin)
    assert AuditEvent.objects.filter(action="endpoint.create", target_id=str(endpoint.pk)).exists()


def test_an_endpoint_name_that_is_not_dns_safe_is_refused(admin):
    response = api(admin).post("/api/v1/endpoints/", {"name": "Iris_Prod"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "name"
    assert "lowercase letters, digits and hyphens" in body["detail"]
    assert not Endpoint.objects.exists()


def test_a_second_endpoint_with_the_same_name_is_refused(admin, endpoint):
    response = api(admin).post("/api/v1/endpoints/", {"name": endpoint.name}, format="json")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "An endpoint named 'iris-prod' already exists.",
        "field": "name",
        "code": "conflict",
    }


def test_a_setting_of_the_wrong_type_names_the_field(admin):
    response = api(admin).post(
        "/api/v1/endpoints/", {"name": "churn", "max_instances": "lots"}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "max_instances"
    assert body["detail"] == "A valid integer is required."
    assert body["errors"] == {"max_instances": ["A valid integer is required."]}
    assert not Endpoint.objects.exists()


def test_an_unknown_setting_is_refused_not_ignored(admin, endpoint):
    response = api(admin).patch(f"/api/v1/endpoints/{endpoint.name}/", {"max_instance": 9}, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "max_instance"
    assert response.json()["detail"] == "This field is not known."


def test_a_team_member_cannot_create_an_endpoint(member):
    response = api(member).post("/api/v1/endpoints/", {"name": "churn"}, format="json")
    assert response.status_code == 403
    assert response.json() == {
        "detail": "Only an admin can do this.",
        "field": None,
        "code": "permission_denied",
    }
    assert not Endpoint.objects.exists()


def test_everyone_signed_in_reads_endpoints_by_name(member, endpoint):
    listing = api(member).get("/api/v1/endpoints/")
    assert listing.status_code == 200
    assert [row["name"] for row in listing.json()["results"]] == ["iris-prod"]
    detail = api(member).get("/api/v1/endpoints/iris-prod/")
    assert detail.status_code == 200
    assert detail.json()["access_mode"] == "api_key"


def test_an_anonymous_caller_is_asked_to_sign_in(endpoint):
    response = api().get("/api/v1/endpoints/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_an_unknown_endpoint_answers_404(admin):
    response = api(admin).get("/api/v1/endpoints/nope/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_an_admin_changes_an_endpoints_settings(admin, endpoint):
    response = api(admin).patch(
        f"/api/v1/endpoints/{endpoint.name}/", {"memory": "1Gi", "concurrency": 10}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["memory"], response.json()["concurrency"]) == ("1Gi", 10)
    endpoint.refresh_from_db()
    assert (endpoint.memory, endpoint.concurrency) == ("1Gi", 10)
    event = AuditEvent.objects.get(action="endpoint.update")
    assert event.details == {"memory": "1Gi", "concurrency": 10}


def test_settings_the_service_refuses_come_back_naming_the_field(admin, endpoint):
    response = api(admin).patch(
        f"/api/v1/endpoints/{endpoint.name}/", {"min_instances": 5, "max_instances": 2}, format="json"
    )
    assert response.status_code == 422
    assert response.json()["field"] == "min_instances"
    assert response.json()["detail"] == "Minimum instances cannot exceed maximum instances."
    endpoint.refresh_from_db()
    assert (endpoint.min_instances, endpoint.max_instances) == (0, 3)


def test_cpu_and_memory_cloud_run_would_refuse_are_refused_up_front(admin, endpoint):
    # A value of the wrong form is a 400; a memory size of the right form outside the CPU's range, 422.
    for change, status, field, detail in (
        ({"memory": "16Gi"}, 422, "memory", "With 1 vCPU, Cloud Run takes 128 MiB to 4 GiB of memory"),
        ({"cpu": "8", "memory": "2Gi"}, 422, "memory", "With 8 vCPU, Cloud Run takes 4 GiB to 32 GiB"),
        ({"cpu": "1.5"}, 400, "cpu", "CPU 1.5 is not allowed: use 0.08 to 1, or a whole number up to 8."),
        ({"memory": "lots"}, 400, "memory", "Memory 'lots' is not a size such as 512Mi or 4Gi."),
    ):
        response = api(admin).patch(f"/api/v1/endpoints/{endpoint.name}/", change, format="json")
        assert response.status_code == status, change
        assert response.json()["field"] == field
        assert response.json()["detail"].startswith(detail)
    endpoint.refresh_from_db()
    assert (endpoint.cpu, endpoint.memory) == ("1", "512Mi")
    response = api(admin).patch(
        f"/api/v1/endpoints/{endpoint.name}/", {"cpu": "2", "memory": "8Gi"}, format="json"
    )
    assert response.status_code == 200, response.json()


def test_a_team_member_cannot_change_an_endpoint(member, endpoint):
    response = api(member).patch(f"/api/v1/endpoints/{endpoint.name}/", {"memory": "1Gi"}, format="json")
    assert response.status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.memory == "512Mi"


def test_deploy_answers_202_with_the_deployment_to_poll(admin, endpoint, iris_version):
    response = api(admin).post(
        f"/api/v1/endpoints/{endpoint.name}/deploy/",
        {"model_version": iris_version.pk, "traffic_percent": 100},
        format="json",
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    deployment = Deployment.objects.get()
    assert body["id"] == deployment.pk
    assert body["url"] == f"http://testserver/api/v1/deployments/{deployment.pk}/"
    assert response["Location"] == body["url"]
    assert body["status"] == "queued"
    assert body["endpoint"] == "iris-prod"
    assert body["model_version"] == {
        "id": iris_version.pk,
        "model": iris_version.model_id,
        "model_name": "iris",
        "number": 1,
    }
    assert (deployment.endpoint, deployment.model_version, deployment.requested_by) == (
        endpoint,
        iris_version,
        admin,
    )
    assert deployment.status == DeploymentStatus.QUEUED

    polled = api(admin).get(body["url"])
    assert polled.status_code == 200
    assert polled.json()["status"] == "queued"


def test_deploying_queues_the_task_once_the_request_commits(
    admin, endpoint, iris_version, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr("portal.celery.app.send_task", lambda name, args, **kwargs: sent.append((name, args)))
    with django_capture_on_commit_callbacks(execute=True):
        response = api(admin).post(
            f"/api/v1/endpoints/{endpoint.name}/deploy/", {"model_version": iris_version.pk}, format="json"
        )
    assert response.status_code == 202
    assert sent == [("worker.deploy", [response.json()["id"]])]


def test_a_non_integer_traffic_share_names_the_field(admin, endpoint, iris_version):
    response = api(admin).post(
        f"/api/v1/endpoints/{endpoint.name}/deploy/",
        {"model_version": iris_version.pk, "traffic_percent": "half"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["field"] == "traffic_percent"
    assert response.json()["detail"] == "A valid integer is required."
    assert not Deployment.objects.exists()


def test_a_traffic_share_out_of_range_is_refused_by_the_service(admin, endpoint, iris_version):
    response = api(admin).post(
        f"/api/v1/endpoints/{endpoint.name}/deploy/",
        {"model_version": iris_version.pk, "traffic_percent": 150},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Traffic must be a whole percentage from 1 to 100.",
        "field": "traffic_percent",
        "code": "invalid",
    }


def test_deploying_a_version_that_does_not_exist_names_the_field(admin, endpoint):
    response = api(admin).post(
        f"/api/v1/endpoints/{endpoint.name}/deploy/", {"model_version": 999}, format="json"
    )
    assert response.status_code == 422
    assert response.json()["field"] == "model_version"
    assert not Deployment.objects.exists()


def test_a_second_deploy_while_one_is_in_progress_answers_409(admin, endpoint, iris_version):
    client = api(admin)
    first = client.post(f"/api/v1/endpoints/{endpoint.name}/deploy/", {"model_version": iris_version.pk})
    assert first.status_code == 202
    second = client.post(f"/api/v1/endpoints/{endpoint.name}/deploy/", {"model_version": iris_version.pk})
    assert second.status_code == 409
    assert second.json()["code"] == "conflict"
    assert "already has a deployment in progress" in second.json()["detail"]
    assert Deployment.objects.count() == 1


def test_a_team_member_cannot_deploy(member, endpoint, iris_version):
    response = api(member).post(
        f"/api/v1/endpoints/{endpoint.name}/deploy/", {"model_version": iris_version.pk}, format="json"
    )
    assert response.status_code == 403
    assert not Deployment.objects.exists()


def test_a_finished_deployment_shows_its_journal_and_what_it_made(
    admin, endpoint, iris_version, memory_runtime
):
    deployment = deploy_and_finish(admin, endpoint, iris_version)
    body = api(admin).get(f"/api/v1/deployments/{deployment.pk}/").json()
    assert body["status"] == "ready"
    revision = f"iris-prod-d{deployment.pk}"
    assert [(step["step"], step["state"], step["message"]) for step in body["steps"]][1:] == [
        ("revision", "done", f"{revision} is ready."),
        ("switch", "done", f"http://iris-prod.memory.invalid answers from {revision}."),
    ]
    assert body["resources"] == {"revision": revision, "url": "http://iris-prod.memory.invalid"}
    assert body["started_at"] and body["finished_at"]
    assert body["error"] == ""
    live = api(admin).get(f"/api/v1/endpoints/{endpoint.name}/").json()
    assert live["live_deployment"]["id"] == deployment.pk
    assert live["service_url"] == "http://iris-prod.memory.invalid"


def test_the_deployment_history_lists_newest_first(admin, member, endpoint, iris_version, memory_runtime):
    first = deploy_and_finish(admin, endpoint, iris_version)
    second = deploy_and_finish(admin, endpoint, iris_version)
    response = api(member).get(f"/api/v1/endpoints/{endpoint.name}/deployments/")
    assert response.status_code == 200
    assert [(row["id"], row["status"]) for row in response.json()["results"]] == [
        (second.pk, "ready"),
        (first.pk, "superseded"),
    ]


def test_rolling_back_answers_202_with_the_new_deployment(admin, endpoint, iris_version, memory_runtime):
    first = deploy_and_finish(admin, endpoint, iris_version)
    deploy_and_finish(admin, endpoint, iris_version)
    response = api(admin).post(f"/api/v1/deployments/{first.pk}/rollback/")
    assert response.status_code == 202, response.json()
    body = response.json()
    rollback = Deployment.objects.get(rollback_of=first)
    assert body["id"] == rollback.pk
    assert body["rollback_of"] == first.pk
    assert body["status"] == "queued"
    assert response["Location"] == f"http://testserver/api/v1/deployments/{rollback.pk}/"
    assert rollback.model_version == first.model_version
    assert AuditEvent.objects.filter(action="deployment.rollback", target_id=str(rollback.pk)).exists()


def test_rolling_back_to_the_live_deployment_is_refused(admin, endpoint, iris_version, memory_runtime):
    live = deploy_and_finish(admin, endpoint, iris_version)
    response = api(admin).post(f"/api/v1/deployments/{live.pk}/rollback/")
    assert response.status_code == 409
    assert response.json()["detail"] == "This deployment is already live."
    assert Deployment.objects.count() == 1


def test_a_team_member_cannot_roll_back(admin, member, endpoint, iris_version, memory_runtime):
    first = deploy_and_finish(admin, endpoint, iris_version)
    deploy_and_finish(admin, endpoint, iris_version)
    response = api(member).post(f"/api/v1/deployments/{first.pk}/rollback/")
    assert response.status_code == 403
    assert Deployment.objects.count() == 2
