"""API tokens as an attacker meets them: expired, revoked, someone else's; and their owners'
view of them in the API and the dashboard (first characters only, never the secret)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from endpoints.models import ApiToken, AuditEvent


def sign_in(username: str, password: str) -> str:
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": username, "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()["token"]


def with_token(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_a_token_expires_after_the_configured_days(settings, admin):
    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_TTL": timedelta(days=7)}
    before = timezone.now()
    sign_in("ada", "ada-password-1")
    expiry = ApiToken.objects.get().expiry
    assert before + timedelta(days=7) <= expiry <= timezone.now() + timedelta(days=7)


def test_an_expired_token_is_refused_and_forgotten(admin, endpoint):
    token = sign_in("ada", "ada-password-1")
    assert with_token(token).get("/api/v1/endpoints/").status_code == 200
    ApiToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
    response = with_token(token).get("/api/v1/endpoints/")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token.", "field": None, "code": "authentication_failed"}
    assert not ApiToken.objects.exists()


def test_only_a_digest_of_the_token_is_stored(admin):
    token = sign_in("ada", "ada-password-1")
    stored = ApiToken.objects.get()
    assert token not in (stored.digest, stored.token_key)
    assert len(stored.token_key) < len(token)


def test_an_owner_lists_their_tokens_without_secrets_and_revokes_one(member, admin):
    first = sign_in("tom", "tom-password-1")
    second = sign_in("tom", "tom-password-1")
    sign_in("ada", "ada-password-1")
    listing = with_token(first).get("/api/v1/auth/tokens/")
    assert listing.status_code == 200
    rows = listing.json()["results"]
    assert [row["user"] for row in rows] == ["tom", "tom"]
    assert {row["prefix"] for row in rows} == {first[:8], second[:8]}
    assert [row["current"] for row in rows] == [False, True]  # newest first
    assert first not in listing.content.decode() and second not in listing.content.decode()

    revoked = next(row for row in rows if row["prefix"] == second[:8])
    response = with_token(first).delete(f"/api/v1/auth/tokens/{revoked['id']}/")
    assert response.status_code == 204
    refused = with_token(second).get("/api/v1/endpoints/")
    assert refused.status_code == 401
    assert refused.json()["code"] == "authentication_failed"
    assert with_token(first).get("/api/v1/endpoints/").status_code == 200
    event = AuditEvent.objects.get(action="api_token.revoke")
    assert (event.actor, event.details) == (member, {"prefix": second[:8], "owner": "tom"})


def test_a_member_cannot_see_or_revoke_someone_elses_token(member, admin):
    mine = sign_in("tom", "tom-password-1")
    sign_in("ada", "ada-password-1")
    theirs = ApiToken.objects.get(user=admin)
    assert [row["user"] for row in with_token(mine).get("/api/v1/auth/tokens/").json()["results"]] == ["tom"]
    response = with_token(mine).delete(f"/api/v1/auth/tokens/{theirs.pk}/")
    assert response.status_code == 404
    assert set(response.json()) == {"detail", "field", "code"}
    assert ApiToken.objects.filter(pk=theirs.pk).exists()


def test_an_admin_lists_and_revokes_everyones_tokens(member, admin):
    stolen = sign_in("tom", "tom-password-1")
    token = sign_in("ada", "ada-password-1")
    listing = with_token(token).get("/api/v1/auth/tokens/").json()["results"]
    assert sorted(row["user"] for row in listing) == ["ada", "tom"]
    toms = ApiToken.objects.get(user=member)
    assert with_token(token).delete(f"/api/v1/auth/tokens/{toms.pk}/").status_code == 204
    assert with_token(stolen).get("/api/v1/auth/tokens/").status_code == 401
    assert AuditEvent.objects.get(action="api_token.revoke").actor == admin


def test_issuing_a_token_is_audited_without_its_secret(admin):
    token = sign_in("ada", "ada-password-1")
    event = AuditEvent.objects.get(action="api_token.issue")
    assert event.actor == admin
    assert event.details["prefix"] == token[:8]
    assert event.details["owner"] == "ada"
    assert token not in str(event.details) + event.target_repr


def test_signing_out_of_the_api_is_a_revoke_of_the_current_token(admin):
    token = sign_in("ada", "ada-password-1")
    client = with_token(token)
    mine = client.get("/api/v1/auth/tokens/").json()["results"][0]
    assert mine["current"] is True
    assert client.delete(f"/api/v1/auth/tokens/{mine['id']}/").status_code == 204
    assert client.get("/api/v1/auth/tokens/").status_code == 401


def test_the_token_endpoint_refuses_a_body_without_a_password_in_the_error_shape(db):
    response = APIClient().post("/api/v1/auth/token/", {"username": "ada"}, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "password"


# -- the dashboard ------------------------------------------------------------------------------------------


def test_a_member_sees_their_tokens_in_the_dashboard_but_never_a_secret(client, member, admin):
    mine = sign_in("tom", "tom-password-1")
    theirs = sign_in("ada", "ada-password-1")
    client.force_login(member)
    page = client.get(reverse("endpoints:token-list"))
    assert page.status_code == 200
    html = page.content.decode()
    assert f"{mine[:8]}…" in html
    assert theirs[:8] not in html
    assert mine not in html
    assert 'href="/tokens/"' in client.get(reverse("endpoints:endpoint-list")).content.decode()


def test_a_member_revokes_their_token_in_the_dashboard(client, member):
    token = sign_in("tom", "tom-password-1")
    client.force_login(member)
    stored = ApiToken.objects.get()
    response = client.post(reverse("endpoints:token-revoke", args=[stored.pk]), follow=True)
    assert response.status_code == 200
    assert f"Token {token[:8]}… revoked" in response.content.decode()
    assert not ApiToken.objects.exists()
    assert with_token(token).get("/api/v1/auth/tokens/").status_code == 401


def test_a_member_cannot_revoke_someone_elses_token_in_the_dashboard(client, member, admin):
    sign_in("ada", "ada-password-1")
    theirs = ApiToken.objects.get()
    client.force_login(member)
    response = client.post(reverse("endpoints:token-revoke", args=[theirs.pk]))
    assert response.status_code == 404
    assert ApiToken.objects.filter(pk=theirs.pk).exists()


def test_an_admin_sees_and_revokes_everyones_tokens_in_the_dashboard(client, member, admin):
    toms = sign_in("tom", "tom-password-1")
    client.force_login(admin)
    html = client.get(reverse("endpoints:token-list")).content.decode()
    assert f"{toms[:8]}…" in html and "tom" in html
    stored = ApiToken.objects.get(user=member)
    client.post(reverse("endpoints:token-revoke", args=[stored.pk]))
    assert not ApiToken.objects.filter(user=member).exists()


@pytest.mark.parametrize(
    ("method", "url"), [("get", reverse("endpoints:token-list")), ("post", "/tokens/1/revoke/")]
)
def test_the_token_pages_need_a_sign_in(client, db, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
