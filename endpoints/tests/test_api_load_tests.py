"""The load tests API: start, read, list per endpoint, cancel; refusals in the API's shape, and the
dashboard's panel and form giving the same records and the same words."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from endpoints.models import AuditEvent, LoadTest, LoadTestStatus
from endpoints.services.deployments import deployment_request
from endpoints.services.operations import deployment_run


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def serving(memory_runtime, admin, iris_version, endpoint, sent):
    """`iris-prod` live on the memory runtime (the test itself is not run here)."""
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    assert deployment_run(deployment_id=deployment.pk) == "ready"
    endpoint.refresh_from_db()
    return endpoint


FIGURES = {"users": 3, "spawn_rate": 2, "duration_seconds": 5}


def test_an_admin_starts_reads_lists_and_cancels_a_load_test(serving, admin):
    started = api(admin).post(f"/api/v1/endpoints/{serving.name}/load-tests/", FIGURES, format="json")
    assert started.status_code == 202, started.json()
    body = started.json()
    assert started["Location"] == body["url"] == f"http://testserver/api/v1/load-tests/{body['id']}/"
    assert (body["status"], body["users"], body["spawn_rate"], body["duration_seconds"]) == (
        "queued",
        3,
        2,
        5,
    )
    assert body["target"] == serving.public_url.rstrip("/")
    assert (body["timeseries"], body["summary"], body["requested_by"]) == ([], None, admin.username)

    listed = api(admin).get(f"/api/v1/endpoints/{serving.name}/load-tests/").json()
    assert [test["id"] for test in listed["results"]] == [body["id"]]
    assert api(admin).get(body["url"]).json()["id"] == body["id"]

    cancelled = api(admin).post(f"{body['url']}cancel/")
    assert cancelled.status_code == 200, cancelled.json()
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["cancelled_by"] == admin.username
    again = api(admin).post(f"{body['url']}cancel/")
    assert (again.status_code, again.json()["code"]) == (409, "conflict")
    assert AuditEvent.objects.filter(action__startswith="load_test.").count() == 2


def test_figures_past_the_caps_are_refused_with_400(serving, admin, settings):
    response = api(admin).post(
        f"/api/v1/endpoints/{serving.name}/load-tests/", {**FIGURES, "users": 10_000}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["field"] == "users"
    assert response.json()["detail"] == f"Choose 1 to {settings.LOAD_TEST_MAX_USERS} users."
    assert not LoadTest.objects.exists()


def test_a_second_test_is_refused_with_409(serving, admin):
    assert (
        api(admin).post(f"/api/v1/endpoints/{serving.name}/load-tests/", FIGURES, format="json").status_code
        == 202
    )
    response = api(admin).post(f"/api/v1/endpoints/{serving.name}/load-tests/", FIGURES, format="json")
    assert response.status_code == 409
    assert "already queued" in response.json()["detail"]


def test_a_member_reads_but_neither_starts_nor_cancels(serving, admin, member):
    response = api(member).post(f"/api/v1/endpoints/{serving.name}/load-tests/", FIGURES, format="json")
    assert response.status_code == 403
    test = api(admin).post(f"/api/v1/endpoints/{serving.name}/load-tests/", FIGURES, format="json").json()
    assert api(member).get(test["url"]).status_code == 200
    assert api(member).post(f"{test['url']}cancel/").status_code == 403
    assert LoadTest.objects.get(pk=test["id"]).status == LoadTestStatus.QUEUED


def test_the_endpoint_page_starts_a_test_and_shows_the_caps_refusals_all_at_once(serving, admin, settings):
    client = Client()
    client.force_login(admin)
    page = client.get(f"/endpoints/{serving.name}/")
    assert b"Start load test" in page.content

    refused = client.post(
        f"/endpoints/{serving.name}/load-tests/start/", {"users": 0, "spawn_rate": 99, "duration_seconds": ""}
    )
    assert refused.status_code == 400
    text = refused.content.decode()
    assert f"Choose 1 to {settings.LOAD_TEST_MAX_USERS} users." in text
    assert f"Choose 1 to {settings.LOAD_TEST_MAX_SPAWN_RATE} users started per second." in text
    assert f"Choose 1 to {settings.LOAD_TEST_MAX_SECONDS} seconds." in text

    started = client.post(f"/endpoints/{serving.name}/load-tests/start/", FIGURES)
    assert started.status_code == 302
    test = LoadTest.objects.get()
    panel = client.get(f"/endpoints/{serving.name}/load-tests/")
    assert f"Load test {test.pk}".encode() in panel.content and b"every 2s" in panel.content

    conflict = client.post(
        f"/endpoints/{serving.name}/load-tests/start/", FIGURES, headers={"HX-Request": "true"}
    )
    assert conflict.status_code == 200  # the panel, with the refusal (htmx swaps only 2xx answers)
    assert f"Load test {test.pk} is already queued on this endpoint." in conflict.content.decode()
    assert LoadTest.objects.count() == 1
