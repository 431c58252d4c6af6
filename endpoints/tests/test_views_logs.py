"""The endpoint's log: the panel on the endpoint page, its JSON feed and the log's own page."""

import pytest
from django.urls import reverse

from endpoints.models import Deployment, DeploymentStatus, Endpoint
from tests.fakes.fixtures import *  # noqa: F403
from worker.runtimes.base import TransientError
from worker.runtimes.logs import LogEntry

LOGS = reverse("endpoints:endpoint-logs", args=["iris-prod"])
DETAIL = reverse("endpoints:endpoint-detail", args=["iris-prod"])


@pytest.fixture
def live(memory_runtime, admin, endpoint, iris_version):
    deployment = Deployment.objects.create(
        endpoint=endpoint,
        model_version=iris_version,
        requested_by=admin,
        status=DeploymentStatus.READY,
        resources={"revision": "iris-prod-d1", "url": "http://iris-prod.memory.invalid"},
    )
    Endpoint.objects.filter(pk=endpoint.pk).update(
        live_deployment=deployment, url="http://iris-prod.memory.invalid"
    )
    write = memory_runtime.write_log
    write(
        "iris-prod-d1", LogEntry("2026-12-06T03:47:37.120Z", "INFO", "Serving iris version 1 on port 18100.")
    )
    write(
        "iris-prod-d1",
        LogEntry(
            "2026-12-06T03:47:40.000001Z",
            "WARNING",
            "401 POST /predict: Send an API key in the x-api-key header. (0.1 ms, client 127.0.0.1)",
            {"status": 401, "path": "/predict"},
        ),
    )
    write("iris-prod-d1", LogEntry("2026-12-06T03:47:41Z", "ERROR", "500 POST /predict: boom"))
    write("iris-prod-d2", LogEntry("2026-12-06T03:47:42Z", "ERROR", "not the live revision"))
    return deployment


def feed(client, **params):
    return client.get(LOGS, {"format": "json", **params})


def test_an_admin_reads_the_live_revisions_log_newest_last(client, admin, live):
    client.force_login(admin)
    response = feed(client)
    assert response.status_code == 200
    body = response.json()
    assert body["revision"] == "iris-prod-d1"
    assert [entry["message"][:10] for entry in body["entries"]] == ["Serving ir", "401 POST /", "500 POST /"]
    assert body["entries"][1] == {
        "time": "2026-12-06T03:47:40.000001Z",
        "shown_time": "2026-12-06 03:47:40.000 UTC",
        "level": "WARNING",
        "message": "401 POST /predict: Send an API key in the x-api-key header. (0.1 ms, client 127.0.0.1)",
        "status": 401,
        "path": "/predict",
    }
    assert body["cursor"] == "iris-prod-d1:3" and body["more"] is False
    assert body["poll_seconds"] == 3.0


def test_the_feed_filters_by_level_and_text(client, admin, live):
    client.force_login(admin)
    assert [e["level"] for e in feed(client, level="WARNING").json()["entries"]] == ["WARNING", "ERROR"]
    assert [e["level"] for e in feed(client, level="ERROR", q="BOOM").json()["entries"]] == ["ERROR"]
    assert feed(client, q="nothing like it").json()["entries"] == []
    limited = feed(client, limit=1).json()
    assert [e["level"] for e in limited["entries"]] == ["ERROR"] and limited["more"] is True


def test_following_from_the_cursor_gives_only_new_entries(client, admin, live, memory_runtime):
    client.force_login(admin)
    cursor = feed(client).json()["cursor"]
    assert feed(client, after=cursor).json()["entries"] == []
    memory_runtime.write_log("iris-prod-d1", LogEntry("2026-12-06T03:48:00Z", "WARNING", "403 POST /predict"))
    memory_runtime.write_log("iris-prod-d1", LogEntry("2026-12-06T03:48:01Z", "INFO", "200 POST /predict"))
    later = feed(client, after=cursor, level="WARNING").json()
    assert [e["message"] for e in later["entries"]] == ["403 POST /predict"]
    assert later["cursor"] == "iris-prod-d1:5"


def test_a_bad_filter_or_cursor_is_a_400_that_says_why(client, admin, live):
    client.force_login(admin)
    response = feed(client, level="LOUD")
    assert response.status_code == 400
    assert "level: Select a valid choice" in response.json()["error"]
    response = feed(client, after="nonsense")
    assert response.status_code == 400
    assert response.json()["error"] == "The log cannot be read that way: the cursor is not one this log gave."
    assert feed(client, q="x" * 201).status_code == 400
    assert feed(client, limit=501).status_code == 400


def test_a_runtime_that_cannot_read_the_log_now_is_a_503(client, admin, live, memory_runtime):
    client.force_login(admin)
    memory_runtime.fail("read_log", TransientError("Cloud Logging is busy"))
    response = feed(client)
    assert response.status_code == 503
    assert response.json()["error"] == "The log could not be read just now: Cloud Logging is busy"


def test_a_team_member_and_a_visitor_cannot_read_the_log(client, member, live):
    assert feed(client).status_code == 302  # to the login page
    client.force_login(member)
    assert feed(client).status_code == 403
    assert client.get(LOGS).status_code == 403
    page = client.get(DETAIL).content.decode()
    assert 'id="logs"' not in page and "logs.js" not in page


def test_the_endpoint_page_shows_the_panel_to_admins(client, admin, live):
    client.force_login(admin)
    page = client.get(DETAIL).content.decode()
    assert 'id="logs"' in page
    assert f'data-log-url="{LOGS}"' in page
    assert '<label for="log-level">Level</label>' in page and '<label for="log-text">Contains</label>' in page
    assert 'role="status"' in page


def test_an_endpoint_with_nothing_live_has_no_log_to_read(client, admin, endpoint, memory_runtime):
    client.force_login(admin)
    assert feed(client).json() == {
        "revision": None,
        "entries": [],
        "cursor": "",
        "more": False,
        "poll_seconds": 3.0,
    }
    assert "Nothing is live" in client.get(LOGS).content.decode()
    assert "data-log-panel" not in client.get(DETAIL).content.decode()


def test_the_logs_own_page_filters_without_javascript(client, admin, live):
    client.force_login(admin)
    response = client.get(LOGS, {"level": "ERROR"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "500 POST /predict: boom" in page
    assert '<time datetime="2026-12-06T03:47:41Z">2026-12-06 03:47:41.000 UTC</time>' in page
    assert "401 POST" not in page and "Serving iris" not in page
    assert '<option value="ERROR" selected>' in page
    assert client.get(LOGS, {"level": "LOUD"}).status_code == 400


def test_on_google_cloud_pages_are_kept_briefly_to_spare_the_read_quota(
    client, admin, endpoint, iris_version, gcp_settings, fakes
):
    deployment = Deployment.objects.create(
        endpoint=endpoint,
        model_version=iris_version,
        requested_by=admin,
        status=DeploymentStatus.READY,
        resources={"revision": "iris-prod-d1"},
    )
    Endpoint.objects.filter(pk=endpoint.pk).update(live_deployment=deployment)
    fakes.logging.write(
        service="iris-prod",
        revision="iris-prod-d1",
        timestamp="2099-01-01T00:00:00Z",  # ahead of the clock: inside any tail's window
        insert_id="a1",
        severity="WARNING",
        json={"message": "401 POST /predict: Send an API key", "status": 401},
    )
    client.force_login(admin)
    first, second = feed(client, q="api key").json(), feed(client, q="api key").json()
    assert first == second
    assert [entry["status"] for entry in first["entries"]] == [401]
    assert first["poll_seconds"] == 15.0
    assert fakes.logging.methods() == ["ListLogEntries"]
    feed(client, q="other")
    assert fakes.logging.methods() == ["ListLogEntries", "ListLogEntries"]
