"""The load tests API: start, read, list per endpoint, cancel; refusals in the API's shape, and the
dashboard's panel and form giving the same records and the same words."""

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from endpoints.models import AuditEvent, LoadTest, LoadTestStatus
from endpoints.services.deployments import deployment_request
from endpoints.services.operations import deployment_run
from endpoints.tests.test_parity import api_error, audit, form_error, make_live, row


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


# -- parity: the API and the dashboard leave the same rows and refuse in the same words -------------------


@pytest.fixture
def twins(memory_runtime, admin, iris_version, sent):
    """Two live endpoints alike but for their names: one driven through the API, one through the web."""
    from endpoints.services.endpoints import endpoint_create

    endpoints = endpoint_create(user=admin, name="via-api"), endpoint_create(user=admin, name="via-web")
    for endpoint in endpoints:
        make_live(admin, endpoint, iris_version)
        endpoint.refresh_from_db()
    return endpoints


def api_start(user, endpoint, **figures):
    return api(user).post(
        f"/api/v1/endpoints/{endpoint.name}/load-tests/", {**FIGURES, **figures}, format="json"
    )


def web_start(user, endpoint, **figures):
    client = Client()
    client.force_login(user)
    return client.post(f"/endpoints/{endpoint.name}/load-tests/start/", {**FIGURES, **figures})


def test_starting_a_test_leaves_the_same_rows_through_both_interfaces(admin, twins):
    assert api_start(admin, twins[0]).status_code == 202
    assert web_start(admin, twins[1]).status_code == 302
    via_api, via_web = (LoadTest.objects.get(endpoint=endpoint) for endpoint in twins)
    assert row(via_api, "endpoint", "url") == row(via_web, "endpoint", "url")
    event_api, event_web = audit("load_test.start", via_api), audit("load_test.start", via_web)
    assert event_api["details"].pop("endpoint") == "via-api"
    assert event_web["details"].pop("endpoint") == "via-web"
    assert event_api == event_web


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        ({"users": 0}, ("users", "Choose 1 to 50 users.")),
        ({"spawn_rate": 11}, ("spawn_rate", "Choose 1 to 10 users started per second.")),
        ({"duration_seconds": 121}, ("duration_seconds", "Choose 1 to 120 seconds.")),
    ],
)
def test_figures_past_the_caps_are_refused_in_the_same_words(admin, twins, figures, expected):
    via_api, via_web = api_start(admin, twins[0], **figures), web_start(admin, twins[1], **figures)
    assert (via_api.status_code, via_web.status_code) == (400, 400)
    assert api_error(via_api) == form_error(via_web, "load_test_form") == expected
    assert not LoadTest.objects.exists()


def test_a_second_test_is_refused_in_the_same_words(admin, twins):
    api_start(admin, twins[0])
    web_start(admin, twins[1])
    via_api, via_web = api_start(admin, twins[0]), web_start(admin, twins[1])
    assert (via_api.status_code, via_web.status_code) == (409, 409)
    field, message = form_error(via_web, "load_test_form")
    assert (field, re.sub(r"\d+", "<id>", message)) == (None, re.sub(r"\d+", "<id>", api_error(via_api)[1]))
    assert LoadTest.objects.count() == 2


def test_a_team_member_is_refused_a_test_in_the_same_words(member, twins):
    via_api, via_web = api_start(member, twins[0]), web_start(member, twins[1])
    assert (via_api.status_code, via_web.status_code) == (403, 403)
    assert api_error(via_api)[1] in via_web.content.decode()
    assert not LoadTest.objects.exists()


def test_the_endpoint_page_cancels_a_test_and_its_panel_says_so(serving, admin, member):
    test = api(admin).post(f"/api/v1/endpoints/{serving.name}/load-tests/", FIGURES, format="json").json()
    client = Client()
    client.force_login(member)
    assert client.post(f"/load-tests/{test['id']}/cancel/").status_code == 403
    client.force_login(admin)

    panel = client.post(f"/load-tests/{test['id']}/cancel/", headers={"HX-Request": "true"})

    assert panel.status_code == 200
    assert LoadTest.objects.get(pk=test["id"]).status == LoadTestStatus.CANCELLED
    text = panel.content.decode()
    assert "Cancelled" in text and "every 2s" not in text and "Start load test" in text
    again = client.post(f"/load-tests/{test['id']}/cancel/")
    assert again.status_code == 302
    assert "This load test is already cancelled." in client.get(again["Location"]).content.decode()


def test_the_panel_shows_the_figures_of_a_finished_test(serving, admin):
    test = api(admin).post(f"/api/v1/endpoints/{serving.name}/load-tests/", FIGURES, format="json").json()
    snapshots = [
        {"t": 1.0, "users": 3, "requests": 40, "failures": 2, "rps": 40.0, "p50": 0, "p95": 3, "p99": 9}
    ]
    summary = {
        "seconds": 1.0, "stopped": False, "requests": 40, "failures": 2, "rps": 40.0, "p50": 0, "p95": 3,
        "p99": 9, "avg": 1.2, "max": 11.0,
        "failures_by_reason": [{"name": "single row", "reason": "HTTP 503: busy", "count": 2}],
    }  # fmt: skip
    LoadTest.objects.filter(pk=test["id"]).update(
        status=LoadTestStatus.DONE, timeseries=snapshots, summary=summary
    )
    client = Client()
    client.force_login(admin)

    text = client.get(f"/endpoints/{serving.name}/load-tests/").content.decode()

    assert '<td class="right">&lt; 1</td><td class="right">3</td><td class="right">9</td>' in text
    assert '<td>single row</td><td>HTTP 503: busy</td><td class="right">2</td>' in text
    assert 'aria-labelledby="chart-load-rps-title chart-load-rps-desc"' in text
    assert "requests/s: peak 40/s, last 40/s; failures/s: peak 2/s, last 2/s." in text
