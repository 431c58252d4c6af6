"""After a key is issued: undoing a revoke, rotating with an overlap, expiry by beat."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from endpoints.models import ApiKey, ApiKeyRequest, AuditEvent, KeyRequestStatus
from endpoints.sealing import key_hash
from endpoints.services.access import access_policy_for
from endpoints.services.keys import (
    api_key_restore_at_runtime,
    api_key_reveal,
    api_key_revoke,
    api_keys_expire,
    key_request_approve,
    key_request_create,
    key_request_issue,
)
from worker import tasks

HTMX = {"HTTP_HX_REQUEST": "true"}


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def key(admin, member, team, endpoint) -> ApiKey:
    request = key_request_create(
        user=member,
        team=team,
        endpoint=endpoint,
        reason="Nightly scoring of the iris catalogue",
        valid_days=30,
    )
    key_request_approve(user=admin, request=request)
    key_request_issue(request_id=request.pk)
    api_key_reveal(user=member, request=request)  # the team took it: a key in use
    return ApiKey.objects.get(request=request)


def revoked_days_ago(key: ApiKey, admin, days: float) -> ApiKey:
    api_key_revoke(user=admin, key=key)
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now() - timedelta(days=days))
    key.refresh_from_db()
    return key


# -- restore ---------------------------------------------------------------------------------------


def test_an_admin_restores_a_key_revoked_yesterday(admin, key, sent, django_capture_on_commit_callbacks):
    revoked_days_ago(key, admin, 1)
    with django_capture_on_commit_callbacks(execute=True):
        response = api(admin).post(f"/api/v1/keys/{key.pk}/restore/")
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["revoked_at"]) == ("active", None)
    key.refresh_from_db()
    assert key.revoked_at is None and key.revoked_by is None
    event = AuditEvent.objects.get(action="api_key.restore")
    assert (event.actor, event.target_id, event.details["prefix"]) == (admin, str(key.pk), key.prefix)
    assert ("worker.restore_key", [key.pk]) in sent
    assert ("worker.apply_access", [key.endpoint_id]) in sent
    assert not access_policy_for(key.endpoint).keys[0].revoked


def test_a_key_revoked_more_than_thirty_days_ago_cannot_be_restored(admin, key):
    revoked_days_ago(key, admin, 31)
    response = api(admin).post(f"/api/v1/keys/{key.pk}/restore/")
    assert response.status_code == 409
    assert "more than 30 days ago, and can no longer be restored" in response.json()["detail"]
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert not AuditEvent.objects.filter(action="api_key.restore").exists()


def test_restoring_a_key_that_is_not_revoked_says_so(admin, key):
    response = api(admin).post(f"/api/v1/keys/{key.pk}/restore/")
    assert response.status_code == 409
    assert response.json() == {"detail": "This key is not revoked.", "field": None, "code": "conflict"}


def test_a_key_past_its_expiry_is_not_restored(admin, key):
    revoked_days_ago(key, admin, 1)
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    response = api(admin).post(f"/api/v1/keys/{key.pk}/restore/")
    assert response.status_code == 409
    assert "expired" in response.json()["detail"]


def test_a_team_member_cannot_restore_a_key(admin, member, key):
    revoked_days_ago(key, admin, 1)
    assert api(member).post(f"/api/v1/keys/{key.pk}/restore/").status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_the_dashboard_offers_restore_on_a_revoked_key_and_swaps_the_row(client, admin, key):
    revoked_days_ago(key, admin, 2)
    client.force_login(admin)
    page = client.get(reverse("endpoints:key-list")).content.decode()
    assert reverse("endpoints:key-restore", args=[key.pk]) in page

    row = client.post(reverse("endpoints:key-restore", args=[key.pk]), **HTMX).content.decode()

    assert row.lstrip().startswith("<tr") and "badge-active" in row
    assert reverse("endpoints:key-revoke", args=[key.pk]) in row
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None


def test_the_dashboard_offers_no_restore_past_thirty_days(client, admin, key):
    revoked_days_ago(key, admin, 40)
    client.force_login(admin)
    page = client.get(reverse("endpoints:key-list")).content.decode()
    assert reverse("endpoints:key-restore", args=[key.pk]) not in page


def test_a_revoke_task_that_runs_after_a_restore_leaves_the_key_working(admin, key, memory_runtime):
    revoked_days_ago(key, admin, 0)
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=None)  # restored before the task ran

    tasks.revoke_key.run(key.pk)

    assert memory_runtime.calls == []


def test_a_restore_the_runtime_can_no_longer_make_marks_the_key_revoked_again(admin, key, memory_runtime):
    from worker.runtimes.base import PermanentError

    memory_runtime.fail("restore_key", PermanentError("API key gone for good"))

    api_key_restore_at_runtime(key_id=key.pk)

    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by is None
    event = AuditEvent.objects.get(action="api_key.restore_failed")
    assert event.details == {"error": "API key gone for good"}


# -- rotation --------------------------------------------------------------------------------------


def test_rotating_a_key_issues_its_team_a_new_key_shown_once_and_keeps_the_old_one_for_the_overlap(
    admin, member, team, key, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api(admin).post(f"/api/v1/keys/{key.pk}/rotate/", {"overlap_hours": 48}, format="json")

    assert response.status_code == 202
    body = response.json()
    new = ApiKeyRequest.objects.get(pk=body["id"])
    assert response["Location"].endswith(f"/api/v1/key-requests/{new.pk}/")
    assert (new.team, new.endpoint, new.status, new.decided_by) == (team, key.endpoint, "approved", admin)
    assert new.decision_note == f"rotation of key {key.prefix}"
    assert ("worker.issue_key", [new.pk]) in sent
    key.refresh_from_db()
    assert key.replacement == new and key.state == "active"
    assert timedelta(hours=47, minutes=59) < key.revoke_after - timezone.now() <= timedelta(hours=48)
    assert AuditEvent.objects.get(action="api_key.rotate").details["overlap_hours"] == 48

    key_request_issue(request_id=new.pk)  # the worker's part
    secret = api(member).post(f"/api/v1/key-requests/{new.pk}/reveal/").json()["key"]
    assert ApiKey.objects.get(request=new).key_hash == key_hash(secret) != key.key_hash
    assert api(member).post(f"/api/v1/key-requests/{new.pk}/reveal/").status_code == 410


def test_the_old_key_ends_at_the_overlap_in_the_access_file(admin, key):
    api(admin).post(f"/api/v1/keys/{key.pk}/rotate/", {"overlap_hours": 2}, format="json")
    key.refresh_from_db()
    (record,) = access_policy_for(key.endpoint).keys
    assert record.expires_at == key.revoke_after.isoformat()


def test_rotating_twice_is_refused_while_the_first_rotation_stands(admin, key):
    api(admin).post(f"/api/v1/keys/{key.pk}/rotate/", {"overlap_hours": 1}, format="json")
    response = api(admin).post(f"/api/v1/keys/{key.pk}/rotate/", {"overlap_hours": 1}, format="json")
    assert response.status_code == 409
    assert "already being rotated" in response.json()["detail"]
    assert ApiKeyRequest.objects.count() == 2


def test_an_overlap_out_of_range_names_the_field(admin, key):
    response = api(admin).post(f"/api/v1/keys/{key.pk}/rotate/", {"overlap_hours": 721}, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "overlap_hours"
    assert ApiKeyRequest.objects.count() == 1


def test_a_revoked_key_cannot_be_rotated(admin, key):
    api_key_revoke(user=admin, key=key)
    response = api(admin).post(f"/api/v1/keys/{key.pk}/rotate/")
    assert response.status_code == 409
    assert response.json()["detail"] == "This key is revoked; only an active key can be rotated."


def test_a_team_member_cannot_rotate_a_key(member, key):
    assert api(member).post(f"/api/v1/keys/{key.pk}/rotate/").status_code == 403
    assert ApiKeyRequest.objects.count() == 1


def test_the_dashboard_rotates_a_key_inline(client, admin, key):
    client.force_login(admin)
    row = client.post(
        reverse("endpoints:key-rotate", args=[key.pk]), {"overlap_hours": "6"}, **HTMX
    ).content.decode()
    key.refresh_from_db()
    assert "rotated: goes" in row
    assert reverse("endpoints:key-request-detail", args=[key.replacement_id]) in row
    assert reverse("endpoints:key-rotate", args=[key.pk]) not in row


# -- expiry and the end of a rotation's overlap ------------------------------------------------------


def test_beat_revokes_expired_keys_once_as_the_system(admin, key, sent, django_capture_on_commit_callbacks):
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.expire_keys.run() == [key.pk]
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.expire_keys.run() == []

    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by is None
    event = AuditEvent.objects.get(action="api_key.expire")
    assert (event.actor, event.details) == (None, {"prefix": key.prefix, "reason": "expired"})
    assert sent.count(("worker.revoke_key", [key.pk])) == 1
    assert ("worker.apply_access", [key.endpoint_id]) in sent


def test_beat_leaves_keys_that_have_not_expired(key):
    assert api_keys_expire() == []
    assert ApiKey.objects.get().revoked_at is None


def test_a_rotated_key_is_revoked_after_the_overlap_once_its_replacement_is_issued(admin, key):
    api(admin).post(f"/api/v1/keys/{key.pk}/rotate/", {"overlap_hours": 1}, format="json")
    key.refresh_from_db()
    later = timezone.now() + timedelta(hours=2)

    assert api_keys_expire(now=later) == []  # the new key is not issued yet: the old one stays

    key_request_issue(request_id=key.replacement_id)
    assert api_keys_expire(now=timezone.now()) == []  # still within the overlap
    assert api_keys_expire(now=later) == [key.pk]
    assert AuditEvent.objects.get(action="api_key.expire").details["reason"] == "rotated"
    assert ApiKey.objects.get(pk=key.pk).state == "revoked"
    assert ApiKey.objects.get(request_id=key.replacement_id).state == "active"


def test_a_rotation_whose_issue_failed_leaves_the_old_key_and_may_be_tried_again(admin, key):
    api(admin).post(f"/api/v1/keys/{key.pk}/rotate/", {"overlap_hours": 0}, format="json")
    key.refresh_from_db()
    ApiKeyRequest.objects.filter(pk=key.replacement_id).update(status=KeyRequestStatus.FAILED)

    assert api_keys_expire(now=timezone.now() + timedelta(hours=1)) == []
    again = api(admin).post(f"/api/v1/keys/{key.pk}/rotate/", {"overlap_hours": 0}, format="json")
    assert again.status_code == 202
