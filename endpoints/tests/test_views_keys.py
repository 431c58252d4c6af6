"""Key requests and keys: a team asks, an admin decides, the team sees the key once; revoking."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from endpoints.models import ApiKey, ApiKeyRequest, KeyRequestStatus
from endpoints.sealing import unseal
from endpoints.services.keys import key_request_approve, key_request_create, key_request_issue

HTMX = {"HTTP_HX_REQUEST": "true"}
REASON = "Nightly scoring of new flowers"


@pytest.fixture
def key_request(member, team, endpoint):
    return key_request_create(user=member, team=team, endpoint=endpoint, reason=REASON, valid_days=30)


@pytest.fixture
def issued(admin, key_request, django_capture_on_commit_callbacks):
    """An issued key request, and the secret sealed in it."""
    key_request_approve(user=admin, request=key_request)
    key_request_issue(request_id=key_request.pk)
    key_request.refresh_from_db()
    return key_request, unseal(key_request.sealed_secret)


def detail(key_request) -> str:
    return reverse("endpoints:key-request-detail", args=[key_request.pk])


def test_a_team_member_requests_a_key_for_an_endpoint(client, member, team, endpoint):
    client.force_login(member)
    form_page = client.get(reverse("endpoints:key-request-create"), {"endpoint": endpoint.name})
    assert form_page.context["form"]["endpoint"].value() == endpoint.name
    response = client.post(
        reverse("endpoints:key-request-create"),
        {"endpoint": endpoint.name, "team": team.pk, "reason": REASON, "valid_days": "14"},
    )
    key_request = ApiKeyRequest.objects.get()
    assert response["Location"] == detail(key_request)
    assert (key_request.status, key_request.valid_days, key_request.requested_by) == ("pending", 14, member)
    assert "Waiting for an admin to decide" in client.get(detail(key_request)).content.decode()


def test_a_vague_reason_is_refused_on_the_reason_field(client, member, team, endpoint):
    client.force_login(member)
    response = client.post(
        reverse("endpoints:key-request-create"), {"endpoint": endpoint.name, "team": team.pk, "reason": "pls"}
    )
    assert response.status_code == 400
    assert "at least 10 characters" in response.context["form"].errors["reason"][0]
    assert not ApiKeyRequest.objects.exists()


def test_too_long_a_validity_is_refused_on_its_field(client, member, team, endpoint):
    client.force_login(member)
    response = client.post(
        reverse("endpoints:key-request-create"),
        {"endpoint": endpoint.name, "team": team.pk, "reason": REASON, "valid_days": "5000"},
    )
    assert "1 to 365 days" in response.context["form"].errors["valid_days"][0]
    assert not ApiKeyRequest.objects.exists()


def test_a_member_can_only_ask_for_their_own_teams(client, member, stranger, endpoint):
    client.force_login(member)
    other_team = stranger.teams.get()
    response = client.post(
        reverse("endpoints:key-request-create"),
        {"endpoint": endpoint.name, "team": other_team.pk, "reason": REASON},
    )
    assert "team" in response.context["form"].errors
    assert not ApiKeyRequest.objects.exists()


def test_someone_in_no_team_is_told_to_join_one(client, endpoint):
    loner = get_user_model().objects.create_user("lone", password="lone-password-1")
    client.force_login(loner)
    assert "not in a team yet" in client.get(reverse("endpoints:key-request-create")).content.decode()


def test_people_see_only_their_teams_requests(client, stranger, key_request):
    client.force_login(stranger)
    assert REASON not in client.get(reverse("endpoints:key-request-list")).content.decode()
    assert client.get(detail(key_request)).status_code == 404


def test_an_admin_approves_a_pending_request_with_a_note(
    client, admin, key_request, django_capture_on_commit_callbacks
):
    client.force_login(admin)
    listing = client.get(reverse("endpoints:key-request-list")).content.decode()
    assert REASON in listing and reverse("endpoints:key-request-approve", args=[key_request.pk]) in listing
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("endpoints:key-request-approve", args=[key_request.pk]),
            {"note": "Fine for the nightly job"},
        )
    assert response.status_code == 302
    key_request.refresh_from_db()
    assert (key_request.status, key_request.decided_by) == ("approved", admin)
    assert key_request.decision_note == "Fine for the nightly job"
    assert len(callbacks) == 1  # the worker is asked to issue the key once this commits


def test_an_admin_rejects_a_request_and_the_team_sees_why(client, admin, member, key_request):
    client.force_login(admin)
    client.post(reverse("endpoints:key-request-reject", args=[key_request.pk]), {"note": "Use the batch API"})
    key_request.refresh_from_db()
    assert key_request.status == KeyRequestStatus.REJECTED
    client.force_login(member)
    page = client.get(detail(key_request)).content.decode()
    assert "Use the batch API" in page and "badge-rejected" in page


def test_deciding_twice_says_it_was_already_decided(client, admin, key_request):
    client.force_login(admin)
    client.post(reverse("endpoints:key-request-reject", args=[key_request.pk]))
    response = client.post(reverse("endpoints:key-request-approve", args=[key_request.pk]), follow=True)
    assert "already decided (rejected)" in response.content.decode()
    assert ApiKeyRequest.objects.get().status == "rejected"


def test_a_team_member_cannot_approve_their_own_request(client, member, key_request):
    client.force_login(member)
    assert client.post(reverse("endpoints:key-request-approve", args=[key_request.pk])).status_code == 403
    assert ApiKeyRequest.objects.get().status == "pending"


def test_the_request_page_polls_while_the_key_is_being_issued(
    client, admin, member, key_request, django_capture_on_commit_callbacks
):
    key_request_approve(user=admin, request=key_request)
    client.force_login(member)
    response = client.get(detail(key_request), **HTMX)
    assert "being issued" in response.content.decode()
    assert 'hx-trigger="every 1s"' in response.content.decode()
    assert "<html" not in response.content.decode()


def test_the_key_is_shown_exactly_once(client, member, issued):
    key_request, secret = issued
    client.force_login(member)
    before = client.get(detail(key_request)).content.decode()
    assert "Reveal key" in before and secret not in before

    reveal = reverse("endpoints:key-request-reveal", args=[key_request.pk])
    # A prefetch or a crawler cannot use it up: a GET is sent to the request's page.
    assert client.get(reveal)["Location"] == detail(key_request)
    response = client.post(reveal)
    assert response.status_code == 200
    assert secret in response.content.decode()
    assert "only time it is shown" in response.content.decode()
    assert "no-store" in response["Cache-Control"]

    after = client.get(detail(key_request)).content.decode()
    assert secret not in after
    assert "cannot be shown again" in after
    again = client.post(reveal)
    assert again.status_code == 410
    assert secret not in again.content.decode() and "already shown once" in again.content.decode()
    assert ApiKeyRequest.objects.get().sealed_secret == ""


def test_an_admin_outside_the_team_is_not_offered_the_reveal(client, admin, issued):
    key_request, secret = issued
    client.force_login(admin)
    page = client.get(detail(key_request)).content.decode()
    assert "Reveal key" not in page and "waiting for team" in page
    assert ApiKeyRequest.objects.get().sealed_secret  # still there for the team


def test_members_see_their_teams_keys_and_admins_see_all(client, admin, member, stranger, issued):
    client.force_login(member)
    prefix = ApiKey.objects.get().prefix
    assert prefix in client.get(reverse("endpoints:key-list")).content.decode()
    client.force_login(stranger)
    assert prefix not in client.get(reverse("endpoints:key-list")).content.decode()
    client.force_login(admin)
    assert prefix in client.get(reverse("endpoints:key-list")).content.decode()


def test_an_admin_revokes_a_key_inline(client, admin, issued, django_capture_on_commit_callbacks):
    key = ApiKey.objects.get()
    client.force_login(admin)
    with django_capture_on_commit_callbacks():
        response = client.post(reverse("endpoints:key-revoke", args=[key.pk]), **HTMX)
    row = response.content.decode()
    assert row.lstrip().startswith("<tr") and "badge-revoked" in row
    assert reverse("endpoints:key-revoke", args=[key.pk]) not in row
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == admin

    again = client.post(reverse("endpoints:key-revoke", args=[key.pk]), **HTMX).content.decode()
    assert "already revoked" in again


def test_revoking_without_htmx_returns_to_the_page_it_came_from(client, admin, endpoint, issued):
    key = ApiKey.objects.get()
    client.force_login(admin)
    back = reverse("endpoints:endpoint-detail", args=[endpoint.name])
    response = client.post(reverse("endpoints:key-revoke", args=[key.pk]), {"next": back})
    assert response["Location"] == back
    assert ApiKey.objects.get().revoked_at is not None


def test_a_team_member_cannot_revoke_a_key(client, member, issued):
    key = ApiKey.objects.get()
    client.force_login(member)
    assert client.post(reverse("endpoints:key-revoke", args=[key.pk]), **HTMX).status_code == 403
    assert ApiKey.objects.get().revoked_at is None
