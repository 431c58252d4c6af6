"""Each write, driven through the REST API and through the dashboard, leaves the same rows and is
refused in the same words.

Each test does the operation once through each interface, on twin targets (an endpoint
`via-api` and an endpoint `via-web`, say), then compares the rows both left behind, minus ids,
names and times. Error cases compare the API's `{"field", "detail"}` with the field and message
the dashboard shows (a form error, or a flashed message for one-click actions).
"""

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from endpoints.demo import IRIS_LABELS
from endpoints.models import (
    AllowlistEntry,
    ApiKey,
    ApiKeyRequest,
    AuditEvent,
    Deployment,
    DeploymentStatus,
    Endpoint,
    ModelVersion,
)
from endpoints.services.allowlist import allowlist_add
from endpoints.services.endpoints import endpoint_create
from endpoints.services.keys import (
    api_key_reveal,
    api_keys_expire,
    key_request_approve,
    key_request_create,
    key_request_issue,
)
from endpoints.services.operations import deployment_run
from endpoints.services.versions import ml_model_create

# -- the two interfaces ------------------------------------------------------------------------------


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def web(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api_error(response) -> tuple[str | None, str]:
    body = response.json()
    return body["field"], body["detail"]


def form_error(response, form: str) -> tuple[str | None, str]:
    """The first error of the form the dashboard re-rendered: (field or None, message)."""
    field, messages = next(iter(response.context[form].errors.items()))
    return (None if field == "__all__" else field), messages[0]


def flashed(response) -> list[str]:
    return [message.message for message in get_messages(response.wsgi_request)]


def row(instance, *ignore: str) -> dict:
    """A record's stored values, minus its id, its time stamps and whatever names the twin."""
    skip = {"id", "created_at", "added_at", "requested_at", "decided_at", "revoked_at", "at", *ignore}
    return {
        f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields if f.name not in skip
    }


def audit(action: str, target) -> dict:
    event = AuditEvent.objects.get(action=action, target_id=str(target.pk))
    return {"actor": event.actor_id, "target_type": event.target_type, "details": event.details}


@pytest.fixture
def twins(admin):
    """Two endpoints alike but for their names: one driven through the API, one through the web."""
    return endpoint_create(user=admin, name="via-api"), endpoint_create(user=admin, name="via-web")


def api_deploy(user, endpoint, version, **extra):
    return api(user).post(
        f"/api/v1/endpoints/{endpoint.name}/deploy/", {"model_version": version.pk, **extra}, format="json"
    )


def web_deploy(user, endpoint, version, **extra):
    return web(user).post(
        reverse("endpoints:deployment-create", args=[endpoint.name]),
        {"model_version": version.pk, "confirmed": "1", **extra},
    )


def make_live(admin, endpoint, version) -> Deployment:
    deployment = Deployment.objects.get(pk=api_deploy(admin, endpoint, version).json()["id"])
    assert deployment_run(deployment_id=deployment.pk) == DeploymentStatus.READY
    return deployment


# -- create an endpoint --------------------------------------------------------------------------------

ENDPOINT_SETTINGS = {
    "description": "Who is about to leave",
    "region": "europe-west1",
    "cpu": "2",
    "memory": "1Gi",
    "min_instances": 1,
    "max_instances": 5,
    "concurrency": 40,
    "timeout_seconds": 30,
    "access_mode": "both",
}


def test_creating_an_endpoint_leaves_the_same_rows_through_both_interfaces(admin):
    assert (
        api(admin)
        .post("/api/v1/endpoints/", {"name": "via-api", **ENDPOINT_SETTINGS}, format="json")
        .status_code
        == 201
    )
    assert (
        web(admin)
        .post(reverse("endpoints:endpoint-create"), {"name": "via-web", **ENDPOINT_SETTINGS})
        .status_code
        == 302
    )
    via_api, via_web = Endpoint.objects.get(name="via-api"), Endpoint.objects.get(name="via-web")
    assert row(via_api, "name") == row(via_web, "name")
    assert audit("endpoint.create", via_api) == audit("endpoint.create", via_web)


@pytest.mark.parametrize(
    "change, api_status",
    [
        ({"name": "Iris_Prod"}, 400),
        ({"name": ""}, 400),
        ({"name": "taken"}, 409),
        ({"name": "fine", "min_instances": 9, "max_instances": 2}, 422),
        ({"name": "fine", "max_instances": 5000}, 400),
    ],
    ids=["not-dns-safe", "no-name", "taken", "min-above-max", "too-many-instances"],
)
def test_creating_an_endpoint_is_refused_in_the_same_words_through_both_interfaces(admin, change, api_status):
    endpoint_create(user=admin, name="taken")
    data = {**ENDPOINT_SETTINGS, **change}
    via_api = api(admin).post("/api/v1/endpoints/", data, format="json")
    via_web = web(admin).post(reverse("endpoints:endpoint-create"), data)
    assert (via_api.status_code, via_web.status_code) == (api_status, 400)
    assert api_error(via_api) == form_error(via_web, "form")
    assert list(Endpoint.objects.values_list("name", flat=True)) == ["taken"]


# -- deploy ---------------------------------------------------------------------------------------------


def test_deploying_leaves_the_same_rows_through_both_interfaces(admin, twins, iris_version):
    endpoint_api, endpoint_web = twins
    assert api_deploy(admin, endpoint_api, iris_version).status_code == 202
    assert web_deploy(admin, endpoint_web, iris_version).status_code == 302
    via_api = Deployment.objects.get(endpoint=endpoint_api)
    via_web = Deployment.objects.get(endpoint=endpoint_web)
    assert row(via_api, "endpoint", "task_id") == row(via_web, "endpoint", "task_id")
    assert via_api.status == DeploymentStatus.QUEUED
    event_api, event_web = audit("deployment.request", via_api), audit("deployment.request", via_web)
    assert event_api["details"].pop("endpoint") == "via-api"
    assert event_web["details"].pop("endpoint") == "via-web"
    assert event_api == event_web


def test_a_deploy_while_one_is_in_progress_is_refused_in_the_same_words(admin, twins, iris_version):
    endpoint_api, endpoint_web = twins
    api_deploy(admin, endpoint_api, iris_version)
    web_deploy(admin, endpoint_web, iris_version)
    via_api = api_deploy(admin, endpoint_api, iris_version)
    via_web = web_deploy(admin, endpoint_web, iris_version)
    assert (via_api.status_code, via_web.status_code) == (409, 400)

    def same_words(error: tuple) -> tuple:
        field, message = error
        return field, re.sub(r"'via-\w+' .* \(deployment \d+,", "'<twin>' ... (deployment <id>,", message)

    assert same_words(api_error(via_api)) == same_words(form_error(via_web, "deploy_form"))
    assert "already has a deployment in progress" in api_error(via_api)[1]
    assert Deployment.objects.count() == 2


def test_a_traffic_share_out_of_range_is_refused_in_the_same_words(
    admin, twins, iris_version, memory_runtime
):
    for endpoint in twins:
        make_live(admin, endpoint, iris_version)
    via_api = api_deploy(admin, twins[0], iris_version, traffic_percent=150)
    via_web = web_deploy(admin, twins[1], iris_version, traffic_percent=150)
    assert (via_api.status_code, via_web.status_code) == (400, 400)
    assert (
        api_error(via_api)
        == form_error(via_web, "deploy_form")
        == (
            "traffic_percent",
            "Traffic must be a whole percentage from 1 to 100.",
        )
    )
    assert Deployment.objects.count() == 2


def test_a_team_member_is_refused_a_deploy_in_the_same_words(member, twins, iris_version):
    via_api = api_deploy(member, twins[0], iris_version)
    via_web = web_deploy(member, twins[1], iris_version)
    assert (via_api.status_code, via_web.status_code) == (403, 403)
    assert api_error(via_api)[1] in via_web.content.decode()
    assert not Deployment.objects.exists()


# -- roll back ------------------------------------------------------------------------------------------


def test_rolling_back_leaves_the_same_rows_through_both_interfaces(
    admin, twins, iris_version, memory_runtime
):
    first = {endpoint.name: make_live(admin, endpoint, iris_version) for endpoint in twins}
    for endpoint in twins:
        make_live(admin, endpoint, iris_version)
    assert api(admin).post(f"/api/v1/deployments/{first['via-api'].pk}/rollback/").status_code == 202
    response = web(admin).post(
        reverse("endpoints:deployment-rollback", args=[first["via-web"].pk]), {"confirmed": "1"}
    )
    assert response.status_code == 302
    via_api = Deployment.objects.get(rollback_of=first["via-api"])
    via_web = Deployment.objects.get(rollback_of=first["via-web"])
    assert row(via_api, "endpoint", "task_id", "rollback_of") == row(
        via_web, "endpoint", "task_id", "rollback_of"
    )
    assert via_api.status == DeploymentStatus.QUEUED
    event_api, event_web = audit("deployment.rollback", via_api), audit("deployment.rollback", via_web)
    for event, endpoint in ((event_api, "via-api"), (event_web, "via-web")):
        assert event["details"].pop("endpoint") == endpoint
        assert event["details"].pop("rollback_of") == first[endpoint].pk
    assert event_api == event_web


def test_rolling_back_to_the_live_deployment_is_refused_in_the_same_words(
    admin, twins, iris_version, memory_runtime
):
    live = {endpoint.name: make_live(admin, endpoint, iris_version) for endpoint in twins}
    via_api = api(admin).post(f"/api/v1/deployments/{live['via-api'].pk}/rollback/")
    via_web = web(admin).post(
        reverse("endpoints:deployment-rollback", args=[live["via-web"].pk]), {"confirmed": "1"}
    )
    assert via_api.status_code == 409
    assert flashed(via_web) == [api_error(via_api)[1]] == ["This deployment is already live."]
    assert Deployment.objects.count() == 2


# -- approve and reject key requests -----------------------------------------------------------------


@pytest.fixture
def two_requests(member, team, endpoint):
    return [
        key_request_create(user=member, team=team, endpoint=endpoint, reason=f"Nightly scoring job {n}")
        for n in (1, 2)
    ]


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_deciding_a_key_request_leaves_the_same_rows_through_both_interfaces(admin, two_requests, decision):
    first, second = two_requests
    assert api(admin).post(f"/api/v1/key-requests/{first.pk}/{decision}/", {"note": "ok"}).status_code == 200
    response = web(admin).post(reverse(f"endpoints:key-request-{decision}", args=[second.pk]), {"note": "ok"})
    assert response.status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    assert row(first, "reason") == row(second, "reason")
    assert first.status == ("approved" if decision == "approve" else "rejected")
    assert audit(f"key_request.{decision}", first) == audit(f"key_request.{decision}", second)


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_deciding_a_decided_request_is_refused_in_the_same_words(admin, two_requests, decision):
    for key_request in two_requests:
        key_request_approve(user=admin, request=key_request)
    first, second = two_requests
    via_api = api(admin).post(f"/api/v1/key-requests/{first.pk}/{decision}/")
    via_web = web(admin).post(reverse(f"endpoints:key-request-{decision}", args=[second.pk]))
    assert via_api.status_code == 409
    assert flashed(via_web) == [api_error(via_api)[1]] == ["This request was already decided (approved)."]


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_team_member_is_refused_a_decision_in_the_same_words(member, two_requests, decision):
    first, second = two_requests
    via_api = api(member).post(f"/api/v1/key-requests/{first.pk}/{decision}/")
    via_web = web(member).post(reverse(f"endpoints:key-request-{decision}", args=[second.pk]))
    assert (via_api.status_code, via_web.status_code) == (403, 403)
    assert api_error(via_api)[1] in via_web.content.decode()
    assert set(ApiKeyRequest.objects.values_list("status", flat=True)) == {"pending"}


# -- revoke keys ----------------------------------------------------------------------------------------


@pytest.fixture
def two_keys(admin, two_requests):
    for key_request in two_requests:
        key_request_approve(user=admin, request=key_request)
        key_request_issue(request_id=key_request.pk)
    return list(ApiKey.objects.order_by("id"))


def test_revoking_a_key_leaves_the_same_rows_through_both_interfaces(admin, two_keys):
    first, second = two_keys
    assert api(admin).post(f"/api/v1/keys/{first.pk}/revoke/").status_code == 200
    assert web(admin).post(reverse("endpoints:key-revoke", args=[second.pk])).status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    ignore = ("request", "prefix", "key_hash", "cloud_name", "expires_at")
    assert row(first, *ignore) == row(second, *ignore)
    assert (first.state, first.revoked_by) == ("revoked", admin)
    assert audit("api_key.revoke", first)["actor"] == audit("api_key.revoke", second)["actor"] == admin.pk


def test_revoking_a_revoked_key_is_refused_in_the_same_words(admin, two_keys):
    for key in two_keys:
        api(admin).post(f"/api/v1/keys/{key.pk}/revoke/")
    first, second = two_keys
    via_api = api(admin).post(f"/api/v1/keys/{first.pk}/revoke/")
    via_web = web(admin).post(reverse("endpoints:key-revoke", args=[second.pk]))
    assert via_api.status_code == 409
    assert flashed(via_web) == [api_error(via_api)[1]] == ["This key is already revoked."]


# -- allowlist ------------------------------------------------------------------------------------------


def api_allow(user, endpoint, cidr, note=""):
    return api(user).post(
        f"/api/v1/endpoints/{endpoint.name}/allowlist/", {"cidr": cidr, "note": note}, format="json"
    )


def web_allow(user, endpoint, cidr, note=""):
    return web(user).post(
        reverse("endpoints:allowlist-add", args=[endpoint.name]), {"cidr": cidr, "note": note}
    )


def test_allowing_an_address_leaves_the_same_rows_through_both_interfaces(admin, twins):
    endpoint_api, endpoint_web = twins
    assert api_allow(admin, endpoint_api, " 10.1.0.7 ", "office").status_code == 201
    assert web_allow(admin, endpoint_web, " 10.1.0.7 ", "office").status_code == 302
    via_api, via_web = (
        AllowlistEntry.objects.get(endpoint=endpoint_api),
        AllowlistEntry.objects.get(endpoint=endpoint_web),
    )
    assert row(via_api, "endpoint") == row(via_web, "endpoint")
    assert via_api.cidr == "10.1.0.7/32"
    assert audit("allowlist.add", endpoint_api) == audit("allowlist.add", endpoint_web)


@pytest.mark.parametrize(
    "cidr",
    ["10.0.0.300/8", "10.0.0.7/24", "", "192.168.0.0/16"],
    ids=["invalid", "host-bits", "empty", "already-there"],
)
def test_allowing_a_bad_address_is_refused_in_the_same_words(admin, twins, cidr):
    for endpoint in twins:
        allowlist_add(user=admin, endpoint=endpoint, cidr="192.168.0.0/16")
    via_api = api_allow(admin, twins[0], cidr)
    via_web = web_allow(admin, twins[1], cidr)
    assert via_api.status_code in (400, 409, 422) and via_web.status_code == 400
    assert api_error(via_api) == form_error(via_web, "allowlist_form")
    assert AllowlistEntry.objects.count() == 2


def test_removing_an_address_leaves_the_same_rows_through_both_interfaces(admin, twins):
    entries = [allowlist_add(user=admin, endpoint=endpoint, cidr="10.0.0.0/8") for endpoint in twins]
    assert api(admin).delete(f"/api/v1/endpoints/via-api/allowlist/{entries[0].pk}/").status_code == 204
    assert (
        web(admin).post(reverse("endpoints:allowlist-remove", args=["via-web", entries[1].pk])).status_code
        == 302
    )
    assert not AllowlistEntry.objects.exists()
    assert audit("allowlist.remove", twins[0]) == audit("allowlist.remove", twins[1])


def test_removing_an_address_of_another_endpoint_is_not_found_through_both_interfaces(admin, twins):
    entry = allowlist_add(user=admin, endpoint=twins[0], cidr="10.0.0.0/8")
    via_api = api(admin).delete(f"/api/v1/endpoints/via-web/allowlist/{entry.pk}/")
    via_web = web(admin).post(reverse("endpoints:allowlist-remove", args=["via-web", entry.pk]))
    assert (via_api.status_code, via_web.status_code) == (404, 404)
    assert AllowlistEntry.objects.count() == 1


# -- upload a model version -------------------------------------------------------------------------------


@pytest.fixture
def twin_models(admin):
    return ml_model_create(user=admin, name="iris-api"), ml_model_create(user=admin, name="iris-web")


def api_upload(user, ml_model, data: bytes, filename: str, **fields):
    return api(user).post(
        f"/api/v1/models/{ml_model.pk}/versions/",
        {"artifact": SimpleUploadedFile(filename, data), **fields},
        format="multipart",
    )


def web_upload(user, ml_model, data: bytes, filename: str, **fields):
    return web(user).post(
        reverse("endpoints:version-create", args=[ml_model.name]),
        {"artifact": SimpleUploadedFile(filename, data), **fields},
    )


def test_uploading_a_version_leaves_the_same_rows_through_both_interfaces(admin, twin_models, iris_bytes):
    fields = {"label_map": json.dumps(IRIS_LABELS), "metrics": json.dumps({"accuracy": 0.97})}
    assert api_upload(admin, twin_models[0], iris_bytes, "iris.skops", **fields).status_code == 201
    assert web_upload(admin, twin_models[1], iris_bytes, "iris.skops", **fields).status_code == 302
    via_api, via_web = (ModelVersion.objects.get(model=ml_model) for ml_model in twin_models)
    assert row(via_api, "model", "artifact", "onnx_artifact") == row(
        via_web, "model", "artifact", "onnx_artifact"
    )
    assert via_api.label_map == IRIS_LABELS
    assert Path(via_api.artifact.path).read_bytes() == Path(via_web.artifact.path).read_bytes() == iris_bytes
    onnx_forms = {Path(version.onnx_artifact.path).read_bytes() for version in (via_api, via_web)}
    assert len(onnx_forms) == 1 and via_api.onnx_sha256
    assert audit("model_version.register", via_api) == audit("model_version.register", via_web)


@pytest.mark.parametrize(
    ("filename", "content", "fields"),
    [
        ("notes.skops", b"this is not a model", {}),
        ("data.csv", b"a,b\n1,2\n", {}),
        ("model.joblib", b"\x80\x04N.", {}),
        ("iris.skops", None, {"label_map": "{0: setosa"}),
        ("iris.skops", None, {"label_map": json.dumps({"7": "unknown"})}),
        ("iris.skops", None, {"metrics": "[1, 2]"}),
        ("iris.skops", None, {"input_schema": json.dumps(["only_one"])}),
    ],
    ids=[
        "not-a-model",
        "unsupported-type",
        "untrusted-pickle",
        "label-map-not-json",
        "label-not-a-class",
        "metrics-not-object",
        "schema-mismatch",
    ],
)
def test_uploading_a_bad_version_is_refused_in_the_same_words(
    admin, twin_models, iris_bytes, filename, content, fields
):
    data = iris_bytes if content is None else content
    via_api = api_upload(admin, twin_models[0], data, filename, **fields)
    via_web = web_upload(admin, twin_models[1], data, filename, **fields)
    assert (via_api.status_code, via_web.status_code) == (422, 400)
    assert api_error(via_api) == form_error(via_web, "form")
    assert not ModelVersion.objects.exists()


def test_uploading_without_a_file_is_refused_in_the_same_words(admin, twin_models):
    via_api = api(admin).post(f"/api/v1/models/{twin_models[0].pk}/versions/", {}, format="multipart")
    via_web = web(admin).post(reverse("endpoints:version-create", args=[twin_models[1].name]), {})
    assert (via_api.status_code, via_web.status_code) == (400, 400)
    assert api_error(via_api) == form_error(via_web, "form") == ("artifact", "Choose a model file to upload.")


def test_reissuing_an_expired_unseen_key_leaves_the_same_rows_through_both_interfaces(admin, two_keys):
    ApiKeyRequest.objects.update(issued_at=timezone.now() - timedelta(hours=73))
    api_keys_expire()
    first, second = (key.request for key in two_keys)
    assert api(admin).post(f"/api/v1/key-requests/{first.pk}/reissue/").status_code == 202
    assert web(admin).post(reverse("endpoints:key-request-reissue", args=[second.pk])).status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    ignore = ("reason", "reissued_as", "issued_at", "requested_at")
    assert row(first, *ignore) == row(second, *ignore)
    assert row(first.reissued_as, "reason", "decision_note") == row(
        second.reissued_as, "reason", "decision_note"
    )
    assert (
        audit("key_request.reissue", first)["actor"]
        == audit("key_request.reissue", second)["actor"]
        == admin.pk
    )


def test_reissuing_a_key_still_inside_its_window_is_refused_in_the_same_words(admin, two_keys):
    first, second = (key.request for key in two_keys)
    via_api = api(admin).post(f"/api/v1/key-requests/{first.pk}/reissue/")
    via_web = web(admin).post(reverse("endpoints:key-request-reissue", args=[second.pk]))
    assert via_api.status_code == 409
    assert flashed(via_web) == [api_error(via_api)[1]]
    assert flashed(via_web) == [
        "Only a request whose key expired unseen can be re-issued; this one is issued."
    ]


# -- restore and rotate keys ----------------------------------------------------------------------------


def test_restoring_a_key_leaves_the_same_rows_through_both_interfaces(admin, member, two_keys):
    for key in two_keys:
        api_key_reveal(user=member, request=key.request)  # a key in use: one never seen is not restored
        api(admin).post(f"/api/v1/keys/{key.pk}/revoke/")
    first, second = two_keys
    assert api(admin).post(f"/api/v1/keys/{first.pk}/restore/").status_code == 200
    assert web(admin).post(reverse("endpoints:key-restore", args=[second.pk])).status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    ignore = ("request", "prefix", "key_hash", "cloud_name", "expires_at")
    assert row(first, *ignore) == row(second, *ignore)
    assert (first.state, first.revoked_at, first.revoked_by) == ("active", None, None)
    assert audit("api_key.restore", first)["actor"] == audit("api_key.restore", second)["actor"] == admin.pk


def test_restoring_a_key_that_is_not_revoked_is_refused_in_the_same_words(admin, two_keys):
    first, second = two_keys
    via_api = api(admin).post(f"/api/v1/keys/{first.pk}/restore/")
    via_web = web(admin).post(reverse("endpoints:key-restore", args=[second.pk]))
    assert via_api.status_code == 409
    assert flashed(via_web) == [api_error(via_api)[1]] == ["This key is not revoked."]


def test_a_team_member_is_refused_a_restore_in_the_same_words(admin, member, two_keys):
    for key in two_keys:
        api(admin).post(f"/api/v1/keys/{key.pk}/revoke/")
    first, second = two_keys
    via_api = api(member).post(f"/api/v1/keys/{first.pk}/restore/")
    via_web = web(member).post(reverse("endpoints:key-restore", args=[second.pk]))
    assert (via_api.status_code, via_web.status_code) == (403, 403)
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 0


def test_rotating_a_key_leaves_the_same_rows_through_both_interfaces(admin, two_keys):
    first, second = two_keys
    response = api(admin).post(f"/api/v1/keys/{first.pk}/rotate/", {"overlap_hours": 12}, format="json")
    assert response.status_code == 202
    assert (
        web(admin)
        .post(reverse("endpoints:key-rotate", args=[second.pk]), {"overlap_hours": "12"})
        .status_code
        == 302
    )
    first.refresh_from_db()
    second.refresh_from_db()
    ignore = ("request", "prefix", "key_hash", "cloud_name", "expires_at", "replacement", "revoke_after")
    assert row(first, *ignore) == row(second, *ignore)
    assert abs(first.revoke_after - second.revoke_after).total_seconds() < 60
    new_first, new_second = first.replacement, second.replacement
    assert row(new_first, "reason", "decision_note") == row(new_second, "reason", "decision_note")
    assert new_first.status == "approved" and new_first.pk == response.json()["id"]
    assert new_first.decision_note == f"rotation of key {first.prefix}"
    assert audit("api_key.rotate", first)["details"]["overlap_hours"] == 12
    assert audit("api_key.rotate", second)["details"]["overlap_hours"] == 12


@pytest.mark.parametrize("hours", [-1, 721, "soon"])
def test_a_bad_overlap_is_refused_in_the_same_words(admin, two_keys, hours):
    first, second = two_keys
    via_api = api(admin).post(f"/api/v1/keys/{first.pk}/rotate/", {"overlap_hours": hours}, format="json")
    via_web = web(admin).post(reverse("endpoints:key-rotate", args=[second.pk]), {"overlap_hours": hours})
    assert via_api.status_code == 400
    if hours != "soon":  # DRF refuses a non-number before the service sees it, in its own words
        assert flashed(via_web) == [api_error(via_api)[1]]
        assert api_error(via_api)[0] == "overlap_hours"
    assert ApiKeyRequest.objects.count() == 2


# -- plan a deploy (the API and the management command) -------------------------------------------------


def test_planning_says_the_same_through_the_api_and_the_command(admin, twins, iris_version):
    from io import StringIO

    from django.core.management import call_command

    via_api = api(admin).post(
        f"/api/v1/endpoints/{twins[0].name}/plan/", {"model_version": iris_version.pk}, format="json"
    )
    out = StringIO()
    call_command("deploy_plan", twins[0].name, "iris", str(iris_version.number), stdout=out)

    assert via_api.status_code == 200
    lines = out.getvalue().splitlines()[1:]
    assert [line.split()[:2] for line in lines] == [
        [change["step"], change["action"]] for change in via_api.json()["changes"]
    ]
    assert Deployment.objects.count() == 0
