"""The dashboard says only what is so: health apart from the last operation, one time format, no
raw None, every error of a form at once, confirmations that say what changes."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from endpoints.models import AllowlistEntry, AuditEvent, Deployment, DeploymentStatus, Endpoint
from endpoints.services.deployments import deployment_finish, deployment_request
from endpoints.services.keys import key_request_approve, key_request_create, key_request_issue

LIST = reverse("endpoints:endpoint-list")
HTMX = {"HTTP_HX_REQUEST": "true"}


def page_of(endpoint) -> str:
    return reverse("endpoints:endpoint-detail", args=[endpoint.name])


def make_live(admin, endpoint, version, resources=None) -> Deployment:
    """A deployment the worker has finished, with what its steps recorded."""
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=version)
    Deployment.objects.filter(pk=deployment.pk).update(
        status=DeploymentStatus.RUNNING,
        started_at=timezone.now(),
        resources=resources
        or {"url": "http://127.0.0.1:18100", "revision": f"{endpoint.name}-d{deployment.pk}"},
    )
    deployment_finish(deployment_id=deployment.pk)
    endpoint.refresh_from_db()
    deployment.refresh_from_db()
    return deployment


def fail(admin, endpoint, version) -> Deployment:
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=version)
    Deployment.objects.filter(pk=deployment.pk).update(
        status=DeploymentStatus.FAILED, error="Copy the artifact: disk full", finished_at=timezone.now()
    )
    return deployment


def row_of(page: str, name: str) -> str:
    rows = re.findall(r"<tr>.*?</tr>", page, flags=re.S)
    return next(row for row in rows if f">{name}</a>" in row)


# Health, apart from the last operation


def test_a_failed_deploy_while_the_live_version_serves_reads_as_serving(
    client, admin, endpoint, iris_version
):
    make_live(admin, endpoint, iris_version)
    failed = fail(admin, endpoint, iris_version)
    client.force_login(admin)
    row = row_of(client.get(LIST).content.decode(), endpoint.name)
    assert 'class="badge health-serving">Serving<' in row
    assert f"Deploy #{failed.pk}</a>" in row and 'class="badge badge-failed">Failed<' in row
    assert "the live version kept serving" in row


def test_an_endpoint_never_deployed_whose_only_deploy_failed_reads_not_deployed(
    client, admin, endpoint, iris_version
):
    fail(admin, endpoint, iris_version)
    client.force_login(admin)
    row = row_of(client.get(LIST).content.decode(), endpoint.name)
    assert "health-not_deployed" in row and "badge-failed" in row
    assert "kept serving" not in row


def test_a_stopped_endpoint_and_one_whose_access_change_failed_say_so(client, admin, iris_version):
    from endpoints.services.endpoints import endpoint_create

    stopped, broken = (endpoint_create(user=admin, name=name) for name in ("stopped-one", "broken-one"))
    for endpoint in (stopped, broken):
        make_live(admin, endpoint, iris_version)
    Endpoint.objects.filter(pk=stopped.pk).update(stopped_at=timezone.now())
    Endpoint.objects.filter(pk=broken.pk).update(
        access_revision=5, access_applied_revision=4, access_error="the serving process refused it"
    )
    client.force_login(admin)
    page = client.get(LIST).content.decode()
    assert 'class="badge health-stopped">Stopped<' in row_of(page, "stopped-one")
    broken_row = row_of(page, "broken-one")
    assert 'class="badge health-degraded">Degraded<' in broken_row
    assert "The last access change failed" in broken_row


# One time format, with its time zone; no raw None


def test_times_are_written_one_way_with_their_time_zone_and_never_as_ago(
    client, admin, endpoint, iris_version
):
    live = make_live(admin, endpoint, iris_version)
    client.force_login(admin)
    pages = [
        client.get(page_of(endpoint)).content.decode(),
        client.get(reverse("endpoints:deployment-detail", args=[live.pk])).content.decode(),
        client.get(reverse("endpoints:audit-list")).content.decode(),
    ]
    stamp = re.compile(
        r'<time datetime="[^"]+" title="[\d-]+ [\d:]+ UTC">\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>'
    )
    for page in pages:
        assert stamp.search(page), page
        assert " ago" not in page
        assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d(?!:| UTC)", page.replace("</time>", ""))


def test_a_first_deploy_shows_no_previous_revision_rather_than_none(client, admin, endpoint, iris_version):
    first = make_live(
        admin,
        endpoint,
        iris_version,
        resources={"url": "http://127.0.0.1:18100", "revision": "iris-prod-d1", "previous_revision": None},
    )
    client.force_login(admin)
    page = client.get(reverse("endpoints:deployment-detail", args=[first.pk])).content.decode()
    assert "iris-prod-d1" in page
    assert "Previous revision" not in page
    assert ">None<" not in page and "None" not in re.sub(r"<[^>]+>", " ", page)


# POST-only URLs opened with GET


@pytest.fixture
def issued(admin, member, team, endpoint, django_capture_on_commit_callbacks):
    key_request = key_request_create(
        user=member, team=team, endpoint=endpoint, reason="Nightly scoring of new flowers"
    )
    key_request_approve(user=admin, request=key_request)
    key_request_issue(request_id=key_request.pk)
    key_request.refresh_from_db()
    return key_request


def test_post_only_urls_opened_with_get_go_to_their_page_and_change_nothing(
    client, admin, endpoint, iris_version, issued
):
    live = make_live(admin, endpoint, iris_version)
    entry = AllowlistEntry.objects.create(endpoint=endpoint, cidr="10.0.0.0/8", added_by=admin)
    key = issued.api_key
    detail = reverse("endpoints:key-request-detail", args=[issued.pk])
    expected = {
        reverse("endpoints:key-request-reveal", args=[issued.pk]): detail,
        reverse("endpoints:key-request-approve", args=[issued.pk]): detail,
        reverse("endpoints:key-request-reject", args=[issued.pk]): detail,
        reverse("endpoints:key-request-reissue", args=[issued.pk]): detail,
        reverse("endpoints:key-revoke", args=[key.pk]): reverse("endpoints:key-list"),
        reverse("endpoints:key-rotate", args=[key.pk]): reverse("endpoints:key-list"),
        reverse("endpoints:key-restore", args=[key.pk]): reverse("endpoints:key-list"),
        reverse("endpoints:deployment-create", args=[endpoint.name]): page_of(endpoint),
        reverse("endpoints:deployment-rollback", args=[live.pk]): reverse(
            "endpoints:deployment-detail", args=[live.pk]
        ),
        reverse("endpoints:endpoint-stop", args=[endpoint.name]): page_of(endpoint),
        reverse("endpoints:endpoint-start", args=[endpoint.name]): page_of(endpoint),
        reverse("endpoints:allowlist-add", args=[endpoint.name]): page_of(endpoint),
        reverse("endpoints:allowlist-remove", args=[endpoint.name, entry.pk]): page_of(endpoint),
        reverse("endpoints:token-revoke", args=[1]): reverse("endpoints:token-list"),
    }
    client.force_login(admin)
    events = AuditEvent.objects.count()
    for url, page in expected.items():
        response = client.get(url)
        assert (response.status_code, response["Location"]) == (302, page), url
    assert client.put(reverse("endpoints:key-revoke", args=[key.pk])).status_code == 405
    assert AuditEvent.objects.count() == events
    issued.refresh_from_db()
    key.refresh_from_db()
    assert issued.revealed_at is None and key.revoked_at is None
    assert Deployment.objects.count() == 1 and AllowlistEntry.objects.count() == 1


# Every error of a form at once


def test_the_key_request_form_shows_every_error_at_once(client, member, endpoint):
    client.force_login(member)
    response = client.post(
        reverse("endpoints:key-request-create"),
        {"endpoint": endpoint.name, "team": "999999", "reason": "x", "valid_days": "9999"},
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"team", "reason", "valid_days"}
    assert "at least 10 characters" in errors["reason"][0]
    assert "1 to 365 days" in errors["valid_days"][0]


def test_the_key_request_service_refuses_with_its_first_problem_and_carries_the_others(admin, endpoint):
    from endpoints.services.errors import ServiceError

    with pytest.raises(ServiceError) as refused:  # the admin is in no team: none to default to
        key_request_create(user=admin, team=None, endpoint=endpoint, reason="", valid_days=0)
    assert refused.value.field == "team"
    assert [other.field for other in refused.value.also] == ["reason", "valid_days"]


# Ranges that let everyone in


@pytest.mark.parametrize(("cidr", "family"), [("0.0.0.0/0", "IPv4"), ("::/0", "IPv6")])
def test_a_range_of_every_address_is_added_only_once_confirmed_in_the_page(
    client, admin, endpoint, cidr, family
):
    client.force_login(admin)
    url = reverse("endpoints:allowlist-add", args=[endpoint.name])
    section = client.post(url, {"cidr": cidr, "note": "all"}, **HTMX).content.decode()
    assert not AllowlistEntry.objects.exists()
    assert 'role="alertdialog"' in section
    assert f"{cidr} lets everyone in." in section and f"Every {family} address passes" in section
    assert "Add it and let everyone in" in section
    client.post(url, {"cidr": cidr, "note": "all", "allow_everyone": "true"}, **HTMX)
    entry = AllowlistEntry.objects.get()
    assert (entry.cidr, entry.note) == (cidr, "all")
    assert AuditEvent.objects.get(action="allowlist.add").details["everyone"] is True


def test_the_api_refuses_a_range_of_every_address_unless_allow_everyone_is_given(admin, endpoint):
    api = APIClient()
    api.force_authenticate(admin)
    url = f"/api/v1/endpoints/{endpoint.name}/allowlist/"
    refused = api.post(url, {"cidr": "0.0.0.0/0"}, format="json")
    assert refused.status_code == 422  # of the right form, but not taken without the word
    assert refused.json()["code"] == "confirm_everyone"
    assert "lets everyone in" in refused.json()["detail"]
    assert api.post(url, {"cidr": "0.0.0.0/0", "allow_everyone": True}, format="json").status_code == 201


# Deploy and rollback say what changes; the version page deploys


def test_deploy_and_rollback_ask_first_naming_what_stops_serving(client, admin, endpoint, iris_version):
    first = make_live(admin, endpoint, iris_version)
    second = make_live(admin, endpoint, iris_version)
    client.force_login(admin)
    page = client.get(page_of(endpoint)).content.decode()
    deploy_form = re.search(
        r"<form[^>]*deployment-create[^>]*>",
        page.replace(reverse("endpoints:deployment-create", args=[endpoint.name]), "deployment-create"),
    ).group(0)
    assert (
        f'data-confirm="Deploy {{version}} to iris-prod? Once it is ready it answers every call to '
        f"http://127.0.0.1:18100, and iris v1 (deployment #{second.pk}, live now) stops serving"
    ) in deploy_form
    assert (
        f'data-confirm="Roll iris-prod back to iris v1 (deployment #{first.pk})? It is deployed again and '
        f"takes all the traffic once ready. iris v1 (deployment #{second.pk}, live now) stops serving."
    ) in page
    detail = client.get(reverse("endpoints:deployment-detail", args=[first.pk])).content.decode()
    assert f"Roll iris-prod back to iris v1 (deployment #{first.pk})?" in detail


def test_without_javascript_deploy_asks_on_a_page_that_lists_the_changes_and_sends_the_same_form(
    client, admin, endpoint, iris_version
):
    live = make_live(admin, endpoint, iris_version)
    client.force_login(admin)
    deploy = reverse("endpoints:deployment-create", args=[endpoint.name])
    page = client.post(deploy, {"model_version": iris_version.pk, "traffic_percent": "25"}).content.decode()
    assert Deployment.objects.count() == 1  # asked, nothing queued
    assert (
        f"Deploy iris v1 to iris-prod with 25% of the traffic? iris v1 (deployment #{live.pk}, live now) "
        "keeps the rest." in page
    )
    assert "<th>Step</th><th>Change</th><th>What</th>" in page  # the runtime's plan
    assert f'<input type="hidden" name="model_version" value="{iris_version.pk}">' in page
    assert '<input type="hidden" name="traffic_percent" value="25">' in page
    assert '<input type="hidden" name="confirmed" value="1">' in page
    sent = client.post(deploy, {"model_version": iris_version.pk, "traffic_percent": "25", "confirmed": "1"})
    assert sent.status_code == 302
    assert Deployment.objects.latest("pk").traffic_percent == 25


def test_without_javascript_a_redeploy_and_a_rollback_ask_on_a_page_first(
    client, admin, endpoint, iris_version
):
    first = make_live(admin, endpoint, iris_version)
    second = make_live(admin, endpoint, iris_version)
    client.force_login(admin)
    deploy = reverse("endpoints:deployment-create", args=[endpoint.name])
    page = client.post(deploy, {"model_version": iris_version.pk, "traffic_percent": "100"}).content.decode()
    assert "Redeploy iris v1 to iris-prod? A new revision of the same version starts" in page
    rollback = reverse("endpoints:deployment-rollback", args=[first.pk])
    page = client.post(rollback).content.decode()
    assert Deployment.objects.count() == 2
    assert (
        f"Roll iris-prod back to iris v1 (deployment #{first.pk})? It is deployed again and takes all the "
        f"traffic once ready. iris v1 (deployment #{second.pk}, live now) stops serving." in page
    )
    assert f'<form method="post" action="{rollback}">' in page
    assert f'href="{page_of(endpoint)}">Cancel</a>' in page
    assert client.post(rollback, {"confirmed": "1"}).status_code == 302
    assert Deployment.objects.latest("pk").rollback_of == first


def test_the_version_page_offers_deploy_this_version_to_admins(client, admin, member, endpoint, iris_version):
    version_page = reverse("endpoints:version-detail", args=["iris", 1])
    client.force_login(admin)
    page = client.get(version_page).content.decode()
    assert "Deploy this version" in page and '<option value="iris-prod">' in page
    response = client.get(reverse("endpoints:version-deploy", args=["iris", 1]), {"endpoint": "iris-prod"})
    assert response["Location"] == f"{page_of(endpoint)}?version={iris_version.pk}#deploy"
    chosen = client.get(response["Location"]).context["deploy_form"]["model_version"]
    assert str(chosen.value()) == str(iris_version.pk)
    assert not Deployment.objects.exists()  # the deploy itself is asked for on the endpoint's page
    nowhere = client.get(reverse("endpoints:version-deploy", args=["iris", 1]), {"endpoint": "nope"})
    assert nowhere["Location"] == version_page
    client.force_login(member)
    assert "Deploy this version" not in client.get(version_page).content.decode()
    assert client.get(reverse("endpoints:version-deploy", args=["iris", 1])).status_code == 403


def test_the_rotate_overlap_box_has_a_visible_label(client, admin, issued):
    client.force_login(admin)
    page = client.get(reverse("endpoints:key-list")).content.decode()
    key = issued.api_key
    assert f'<label class="overlap small" for="overlap-{key.pk}">Overlap (hours)</label>' in page
    assert f'id="overlap-{key.pk}" name="overlap_hours"' in page


# The deploy form offers only what the runtime can do


def test_a_share_the_form_does_not_offer_is_refused_when_asked_not_at_a_later_step(
    client, admin, endpoint, iris_version
):
    client.force_login(admin)
    page = client.get(page_of(endpoint)).content.decode()
    assert 'name="traffic_percent"' not in page  # nothing is live: no traffic to share
    deploy = reverse("endpoints:deployment-create", args=[endpoint.name])
    response = client.post(
        deploy, {"model_version": iris_version.pk, "traffic_percent": "10", "confirmed": "1"}
    )
    assert response.status_code == 400
    assert "A canary share needs a version already live on the endpoint" in response.content.decode()
    assert not Deployment.objects.exists()  # nothing queued to fail at a later step
    response = client.post(
        deploy, {"model_version": iris_version.pk, "traffic_percent": "ten", "confirmed": "1"}
    )
    assert "Traffic must be a whole percentage from 1 to 100." in response.content.decode()
    assert not Deployment.objects.exists()
    full = client.post(deploy, {"model_version": iris_version.pk, "traffic_percent": "100", "confirmed": "1"})
    assert full.status_code == 302 and Deployment.objects.count() == 1


def test_audit_details_show_no_raw_none_and_times_as_every_page(client, admin, endpoint):
    AuditEvent.objects.create(
        actor=admin,
        action="token.issue",
        target_type="token",
        target_id="1",
        target_repr="token 1",
        details={"expiry": None, "at": "2026-12-06T04:50:00+00:00", "cidrs": ["10.0.0.0/8", "::/0"]},
    )
    client.force_login(admin)
    page = client.get(reverse("endpoints:audit-list")).content.decode()
    assert '<span class="muted">expiry</span> —' in page
    assert (
        '<time datetime="2026-12-06T04:50:00+00:00" title="2026-12-06 04:50:00 UTC">2026-12-06 04:50 UTC'
        in page
    )
    assert "10.0.0.0/8, ::/0" in page and "None" not in page


def test_the_endpoint_form_shows_every_error_at_once(client, admin):
    client.force_login(admin)
    response = client.post(
        reverse("endpoints:endpoint-create"),
        {
            "name": "",
            "description": "",
            "region": "us-central1",
            "cpu": "1",
            "memory": "16Gi",
            "min_instances": "5",
            "max_instances": "2",
            "concurrency": "80",
            "timeout_seconds": "60",
            "access_mode": "api_key",
        },
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"name", "min_instances", "memory"}
    assert errors["name"] == ["Give the endpoint a name."]
    assert "Minimum instances cannot exceed maximum instances." in errors["min_instances"]
    assert "With 1 vCPU, Cloud Run takes" in errors["memory"][0]
    assert not Endpoint.objects.exists()


def test_the_upload_form_shows_every_error_at_once(client, admin, iris_version):
    client.force_login(admin)
    response = client.post(
        reverse("endpoints:version-create", args=[iris_version.model.name]),
        {
            "artifact": SimpleUploadedFile("model.txt", b"not a model"),
            "input_schema": "[1,",
            "label_map": "{",
            "metrics": "[]",
            "example": "{oops}",
        },
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"artifact", "input_schema", "label_map", "metrics", "example"}
    assert "Metrics must be a JSON object." in errors["metrics"]
    assert all("not valid JSON" in errors[field][0] for field in ("input_schema", "label_map", "example"))
    assert iris_version.model.versions.count() == 1


def test_the_api_lists_every_problem_of_an_upload_under_errors(admin, iris_version):
    api = APIClient()
    api.force_authenticate(admin)
    response = api.post(
        f"/api/v1/models/{iris_version.model.pk}/versions/",
        {"artifact": SimpleUploadedFile("model.skops", b"x"), "label_map": "{", "metrics": "[]"},
        format="multipart",
    )
    body = response.json()
    assert response.status_code == 422, body
    assert body["field"] == "label_map" and body["detail"].startswith("This is not valid JSON")
    assert body["errors"] == {"label_map": [body["detail"]], "metrics": ["Metrics must be a JSON object."]}
