"""Attacks on an issued key's secret: it is sealed until one reveal, and erased by a revoke or
when its reveal window passes unseen. Every refusal is a 4xx that says why and shows no secret."""

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from endpoints.models import ApiKey, ApiKeyRequest, AuditEvent, KeyRequestStatus
from endpoints.sealing import _legacy_fernet, key_hash, seal, unseal
from endpoints.services.keys import (
    api_key_revoke,
    api_keys_expire,
    key_request_approve,
    key_request_create,
    key_request_issue,
)
from worker import tasks

REASON = "Nightly scoring of the iris catalogue"


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def reveal_url(request: ApiKeyRequest) -> str:
    return f"/api/v1/key-requests/{request.pk}/reveal/"


@pytest.fixture
def issued(admin, member, team, endpoint) -> tuple[ApiKeyRequest, str]:
    """An issued, never revealed key request, and the secret sealed in it (what an attacker wants)."""
    request = key_request_create(user=member, team=team, endpoint=endpoint, reason=REASON, valid_days=30)
    key_request_approve(user=admin, request=request)
    key_request_issue(request_id=request.pk)
    request.refresh_from_db()
    return request, unseal(request.sealed_secret)


def issued_hours_ago(request: ApiKeyRequest, hours: float) -> None:
    ApiKeyRequest.objects.filter(pk=request.pk).update(issued_at=timezone.now() - timedelta(hours=hours))


def assert_leaks_nothing(response, secret: str, request: ApiKeyRequest) -> None:
    assert secret not in response.content.decode()
    assert secret[12:] not in response.content.decode()  # not even past the public prefix
    request.refresh_from_db()
    assert request.sealed_secret == "" and request.revealed_at is None
    assert not AuditEvent.objects.filter(action="api_key.reveal").exists()


# -- reveal after revoke ---------------------------------------------------------------------------


def test_revealing_a_revoked_key_is_refused_with_a_reason_and_leaks_nothing(admin, member, issued):
    request, secret = issued
    api_key_revoke(user=admin, key=ApiKey.objects.get(request=request))

    response = api(member).post(reveal_url(request))

    assert response.status_code == 410
    body = response.json()
    assert body["code"] == "revoked"
    assert "revoked on" in body["detail"] and "before it was shown" in body["detail"]
    assert_leaks_nothing(response, secret, request)
    listed = api(member).get(f"/api/v1/key-requests/{request.pk}/").json()
    assert listed["can_reveal"] is False


def test_revoking_an_unrevealed_key_erases_its_sealed_secret_in_the_same_step(admin, issued):
    request, _secret = issued
    key = ApiKey.objects.get(request=request)
    api(admin).post(f"/api/v1/keys/{key.pk}/revoke/")
    request.refresh_from_db()
    assert request.sealed_secret == ""
    event = AuditEvent.objects.get(action="api_key.revoke")
    assert event.details == {"prefix": key.prefix, "unrevealed_secret_erased": True}


def test_the_dashboard_refuses_to_reveal_a_revoked_key_with_a_410_and_its_reason(
    client, admin, member, issued
):
    request, secret = issued
    api_key_revoke(user=admin, key=ApiKey.objects.get(request=request))
    client.force_login(member)
    page = client.get(reverse("endpoints:key-request-detail", args=[request.pk])).content.decode()
    assert "Reveal key" not in page and "revoked on" in page

    response = client.post(reverse("endpoints:key-request-reveal", args=[request.pk]))

    assert response.status_code == 410
    assert "a revoked key is never revealed" in response.content.decode()
    assert_leaks_nothing(response, secret, request)


def test_a_key_beat_revoked_at_its_expiry_before_anyone_saw_it_is_not_revealed(member, issued):
    request, secret = issued
    ApiKey.objects.filter(request=request).update(expires_at=timezone.now() - timedelta(minutes=1))
    api_keys_expire()
    response = api(member).post(reveal_url(request))
    assert (response.status_code, response.json()["code"]) == (410, "revoked")
    assert_leaks_nothing(response, secret, request)


def test_a_key_revoked_before_it_was_shown_cannot_be_restored(admin, issued):
    request, _secret = issued
    key = api_key_revoke(user=admin, key=ApiKey.objects.get(request=request))
    response = api(admin).post(f"/api/v1/keys/{key.pk}/restore/")
    assert response.status_code == 409
    assert "revoked before anyone saw it" in response.json()["detail"]
    key.refresh_from_db()
    assert key.revoked_at is not None


# -- the reveal window -----------------------------------------------------------------------------


def test_revealing_after_the_window_is_refused_as_expired_unseen_and_erases_the_secret(
    member, issued, sent, django_capture_on_commit_callbacks
):
    request, secret = issued
    issued_hours_ago(request, 73)

    with django_capture_on_commit_callbacks(execute=True):
        response = api(member).post(reveal_url(request))

    assert response.status_code == 410
    body = response.json()
    assert body["code"] == "expired_unseen"
    assert body["detail"].startswith("This key expired unseen: nobody revealed it within 72 hours")
    assert "An admin can re-issue it." in body["detail"]
    assert_leaks_nothing(response, secret, request)
    assert request.status == KeyRequestStatus.EXPIRED_UNSEEN
    key = ApiKey.objects.get(request=request)
    assert key.revoked_at is not None and key.revoked_by is None
    assert ("worker.revoke_key", [key.pk]) in sent
    assert AuditEvent.objects.get(action="key_request.expire_unseen").target_id == str(request.pk)
    assert AuditEvent.objects.get(action="api_key.expire").details == {
        "prefix": key.prefix,
        "reason": "unseen",
    }
    listed = api(member).get(f"/api/v1/key-requests/{request.pk}/").json()
    assert (listed["status"], listed["can_reveal"]) == ("expired_unseen", False)

    again = api(member).post(reveal_url(request))
    assert (again.status_code, again.json()["code"]) == (410, "expired_unseen")


def test_a_key_just_inside_its_window_is_still_revealed_once(member, issued):
    request, secret = issued
    issued_hours_ago(request, 71.9)
    assert api(member).get(f"/api/v1/key-requests/{request.pk}/").json()["can_reveal"] is True
    response = api(member).post(reveal_url(request))
    assert (response.status_code, response.json()["key"]) == (200, secret)


def test_the_reveal_window_is_a_setting(settings, member, issued):
    settings.KEY_REVEAL_WINDOW_HOURS = 1
    request, secret = issued
    issued_hours_ago(request, 2)
    response = api(member).post(reveal_url(request))
    assert response.status_code == 410
    assert "within 1 hours" in response.json()["detail"]
    assert_leaks_nothing(response, secret, request)


def test_beat_erases_and_revokes_keys_left_unseen_past_their_window(admin, member, team, endpoint, issued):
    request, _secret = issued
    issued_hours_ago(request, 80)
    fresh = key_request_create(user=member, team=team, endpoint=endpoint, reason=REASON)
    key_request_approve(user=admin, request=fresh)
    key_request_issue(request_id=fresh.pk)

    revoked = tasks.expire_keys()

    request.refresh_from_db()
    fresh.refresh_from_db()
    assert revoked == [ApiKey.objects.get(request=request).pk]
    assert (request.status, request.sealed_secret) == (KeyRequestStatus.EXPIRED_UNSEEN, "")
    assert fresh.status == KeyRequestStatus.ISSUED and fresh.sealed_secret
    assert tasks.expire_keys() == []  # once
    assert AuditEvent.objects.filter(action="key_request.expire_unseen").count() == 1


def test_beat_leaves_a_key_revealed_in_time(member, issued):
    request, _secret = issued
    api(member).post(reveal_url(request))
    issued_hours_ago(request, 80)
    assert api_keys_expire() == []
    request.refresh_from_db()
    assert request.status == KeyRequestStatus.ISSUED
    assert ApiKey.objects.get(request=request).revoked_at is None


def test_the_dashboard_says_the_key_expired_unseen(client, member, issued):
    request, _secret = issued
    issued_hours_ago(request, 73)
    api_keys_expire()
    client.force_login(member)
    page = client.get(reverse("endpoints:key-request-detail", args=[request.pk])).content.decode()
    assert "Expired unseen" in page and "Ask an admin to re-issue it." in page
    assert "Reveal key" not in page


# -- re-issue --------------------------------------------------------------------------------------


def test_an_admin_reissues_an_expired_unseen_key_and_the_team_reveals_a_fresh_key_once(
    admin, member, issued, sent, django_capture_on_commit_callbacks
):
    request, old_secret = issued
    issued_hours_ago(request, 73)
    api_keys_expire()
    old_key = ApiKey.objects.get(request=request)

    with django_capture_on_commit_callbacks(execute=True):
        response = api(admin).post(f"/api/v1/key-requests/{request.pk}/reissue/")

    assert response.status_code == 202
    new = ApiKeyRequest.objects.get(pk=response.json()["id"])
    assert response["Location"].endswith(f"/api/v1/key-requests/{new.pk}/")
    assert (new.status, new.team, new.endpoint, new.decided_by) == (
        KeyRequestStatus.APPROVED,
        request.team,
        request.endpoint,
        admin,
    )
    assert ("worker.issue_key", [new.pk]) in sent
    request.refresh_from_db()
    assert request.reissued_as == new
    event = AuditEvent.objects.get(action="key_request.reissue")
    assert (event.actor, event.target_id, event.details["request"]) == (admin, str(request.pk), new.pk)

    tasks.issue_key(new.pk)  # what the worker runs for the task
    first = api(member).post(reveal_url(new))
    assert first.status_code == 200
    fresh = first.json()["key"]
    assert fresh != old_secret
    assert ApiKey.objects.get(request=new).key_hash == key_hash(fresh)
    assert api(member).post(reveal_url(new)).status_code == 410
    old_key.refresh_from_db()
    assert old_key.revoked_at is not None
    old = api(member).post(reveal_url(request)).json()
    assert old["code"] == "expired_unseen" and f"re-issued as request {new.pk}" in old["detail"]


def test_reissuing_revokes_an_unseen_key_beat_has_not_reached_yet(admin, issued):
    request, secret = issued
    issued_hours_ago(request, 73)
    response = api(admin).post(f"/api/v1/key-requests/{request.pk}/reissue/")
    assert response.status_code == 202
    assert secret not in response.content.decode()
    request.refresh_from_db()
    assert (request.status, request.sealed_secret) == (KeyRequestStatus.EXPIRED_UNSEEN, "")
    assert ApiKey.objects.get(request=request).revoked_at is not None


def test_a_key_still_inside_its_window_cannot_be_reissued(admin, issued):
    request, _secret = issued
    response = api(admin).post(f"/api/v1/key-requests/{request.pk}/reissue/")
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "Only a request whose key expired unseen can be re-issued; this one is issued."
    )
    assert ApiKeyRequest.objects.count() == 1


def test_reissuing_twice_is_refused(admin, issued):
    request, _secret = issued
    issued_hours_ago(request, 73)
    first = api(admin).post(f"/api/v1/key-requests/{request.pk}/reissue/").json()
    second = api(admin).post(f"/api/v1/key-requests/{request.pk}/reissue/")
    assert second.status_code == 409
    assert second.json()["detail"] == f"This request was already re-issued as request {first['id']}."
    assert ApiKeyRequest.objects.count() == 2


def test_a_team_member_cannot_reissue_a_key(member, issued):
    request, _secret = issued
    issued_hours_ago(request, 73)
    response = api(member).post(f"/api/v1/key-requests/{request.pk}/reissue/")
    assert response.status_code == 403
    assert ApiKeyRequest.objects.count() == 1


def test_an_admin_reissues_from_the_request_page(client, admin, issued):
    request, _secret = issued
    issued_hours_ago(request, 73)
    api_keys_expire()
    client.force_login(admin)
    page = client.get(reverse("endpoints:key-request-detail", args=[request.pk])).content.decode()
    assert "Re-issue key" in page

    response = client.post(reverse("endpoints:key-request-reissue", args=[request.pk]))

    new = ApiKeyRequest.objects.get(reissue_of=request)
    assert response.status_code == 302
    assert response["Location"] == reverse("endpoints:key-request-detail", args=[new.pk])
    page = client.get(reverse("endpoints:key-request-detail", args=[request.pk])).content.decode()
    assert f"request #{new.pk}" in page and "Re-issue key" not in page


# -- sealing ---------------------------------------------------------------------------------------


def test_sealed_secrets_still_open_after_secret_key_changes(settings, member, issued):
    request, secret = issued
    settings.SECRET_KEY = "a-rotated-secret-key-" + "x" * 50
    response = api(member).post(reveal_url(request))
    assert (response.status_code, response.json()["key"]) == (200, secret)


def test_the_sealing_key_is_rotated_by_putting_the_new_one_first(settings):
    old, new = settings.KEY_SEALING_KEYS[0], Fernet.generate_key().decode()
    sealed_before = seal("mep_before-rotation")
    settings.KEY_SEALING_KEYS = [new, old]
    sealed_after = seal("mep_after-rotation")
    assert unseal(sealed_before) == "mep_before-rotation"
    settings.KEY_SEALING_KEYS = [new]
    assert unseal(sealed_after) == "mep_after-rotation"
    with pytest.raises(ValueError):
        unseal(sealed_before)


def test_a_secret_that_no_sealing_key_opens_answers_409_and_is_kept(settings, member, issued):
    request, secret = issued
    settings.KEY_SEALING_KEYS = [Fernet.generate_key().decode()]
    response = api(member).post(reveal_url(request))
    assert response.status_code == 409
    assert "KEY_SEALING_KEY" in response.json()["detail"]
    assert secret not in response.content.decode()
    request.refresh_from_db()
    assert request.sealed_secret and request.revealed_at is None


def test_a_secret_sealed_before_the_sealing_key_existed_still_opens(member, issued):
    request, secret = issued
    ApiKeyRequest.objects.filter(pk=request.pk).update(
        sealed_secret=_legacy_fernet().encrypt(secret.encode()).decode()
    )
    response = api(member).post(reveal_url(request))
    assert (response.status_code, response.json()["key"]) == (200, secret)


def test_a_sealed_secret_is_not_the_secret_nor_sealed_with_secret_key(settings, issued):
    request, secret = issued
    assert secret not in request.sealed_secret
    settings.KEY_SEALING_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ValueError):  # only the legacy SECRET_KEY derivation is left: it does not open
        unseal(request.sealed_secret)
