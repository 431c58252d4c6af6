"""The key API: teams request keys, admins decide, the team sees its key once, admins revoke."""

import pytest
from rest_framework.test import APIClient

from endpoints.models import ApiKey, ApiKeyRequest, AuditEvent, KeyRequestStatus, Team
from endpoints.sealing import key_hash
from endpoints.services.keys import key_request_approve, key_request_create, key_request_issue


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def key_request(member, team, endpoint):
    return key_request_create(
        user=member, team=team, endpoint=endpoint, reason="Nightly scoring of the iris catalogue"
    )


@pytest.fixture
def issued(admin, key_request):
    """A request approved and issued by the service with the local runtime, as the worker does."""
    key_request_approve(user=admin, request=key_request)
    return key_request_issue(request_id=key_request.pk)


def test_a_team_member_requests_a_key_for_their_team(member, team, endpoint):
    response = api(member).post(
        "/api/v1/key-requests/",
        {
            "endpoint": "iris-prod",
            "team": team.pk,
            "reason": "Scoring the catalogue nightly",
            "valid_days": 30,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    request = ApiKeyRequest.objects.get()
    body = response.json()
    assert body["id"] == request.pk
    assert response["Location"] == f"http://testserver/api/v1/key-requests/{request.pk}/"
    assert (body["status"], body["endpoint"], body["team_name"], body["can_reveal"]) == (
        "pending",
        "iris-prod",
        "Data science",
        False,
    )
    assert (request.team, request.endpoint, request.requested_by, request.valid_days) == (
        team,
        endpoint,
        member,
        30,
    )
    assert AuditEvent.objects.filter(action="key_request.create").count() == 1


def test_a_key_request_for_another_team_is_refused(member, endpoint):
    other = Team.objects.create(name="Finance")
    response = api(member).post(
        "/api/v1/key-requests/",
        {"endpoint": "iris-prod", "team": other.pk, "reason": "Scoring the catalogue nightly"},
        format="json",
    )
    assert response.status_code == 422
    assert response.json()["detail"] == "Choose one of your teams."
    assert response.json()["field"] == "team"
    assert "Finance" not in response.content.decode()
    assert not ApiKeyRequest.objects.exists()


def test_a_member_of_one_team_may_leave_the_team_out(member, team, endpoint):
    response = api(member).post(
        "/api/v1/key-requests/",
        {"endpoint": "iris-prod", "reason": "Scoring the catalogue nightly"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["team_name"] == team.name
    assert ApiKeyRequest.objects.get().team == team


def test_a_member_of_two_teams_without_a_team_is_asked_to_choose(member, endpoint):
    Team.objects.create(name="Finance").members.add(member)
    response = api(member).post(
        "/api/v1/key-requests/",
        {"endpoint": "iris-prod", "reason": "Scoring the catalogue nightly"},
        format="json",
    )
    assert response.status_code == 422
    assert response.json() == {
        "detail": "Choose the team the key is for.",
        "field": "team",
        "code": "invalid",
    }
    assert not ApiKeyRequest.objects.exists()


def test_a_short_reason_names_the_field(member, team, endpoint):
    response = api(member).post(
        "/api/v1/key-requests/", {"endpoint": "iris-prod", "team": team.pk, "reason": "pls"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["field"] == "reason"
    assert not ApiKeyRequest.objects.exists()


def test_a_key_request_for_an_unknown_endpoint_names_the_field(member, team):
    response = api(member).post(
        "/api/v1/key-requests/",
        {"endpoint": "nope", "team": team.pk, "reason": "Scoring the catalogue nightly"},
        format="json",
    )
    assert response.status_code == 422
    assert response.json()["field"] == "endpoint"


def test_a_team_member_sees_only_their_teams_requests(admin, member, stranger, key_request):
    assert [row["id"] for row in api(member).get("/api/v1/key-requests/").json()["results"]] == [
        key_request.pk
    ]
    assert api(stranger).get("/api/v1/key-requests/").json()["results"] == []
    assert api(stranger).get(f"/api/v1/key-requests/{key_request.pk}/").status_code == 404
    assert [row["id"] for row in api(admin).get("/api/v1/key-requests/").json()["results"]] == [
        key_request.pk
    ]


def test_an_admin_approves_a_request(admin, key_request, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("portal.celery.app.send_task", lambda name, args, **kwargs: sent.append((name, args)))
    with django_capture_on_commit_callbacks(execute=True):
        response = api(admin).post(f"/api/v1/key-requests/{key_request.pk}/approve/", {"note": "ok"})
    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["decided_by"]) == ("approved", "ada")
    key_request.refresh_from_db()
    assert (key_request.status, key_request.decided_by, key_request.decision_note) == (
        "approved",
        admin,
        "ok",
    )
    assert sent == [("worker.issue_key", [key_request.pk])]


def test_an_admin_rejects_a_request(admin, key_request):
    response = api(admin).post(
        f"/api/v1/key-requests/{key_request.pk}/reject/", {"note": "use the batch export"}
    )
    assert response.status_code == 200
    key_request.refresh_from_db()
    assert (key_request.status, key_request.decision_note) == ("rejected", "use the batch export")
    assert AuditEvent.objects.filter(action="key_request.reject").count() == 1


def test_a_request_decided_already_answers_409(admin, key_request):
    api(admin).post(f"/api/v1/key-requests/{key_request.pk}/reject/")
    response = api(admin).post(f"/api/v1/key-requests/{key_request.pk}/approve/")
    assert response.status_code == 409
    assert response.json()["detail"] == "This request was already decided (rejected)."
    key_request.refresh_from_db()
    assert key_request.status == KeyRequestStatus.REJECTED


def test_a_team_member_cannot_approve_a_request(member, key_request):
    response = api(member).post(f"/api/v1/key-requests/{key_request.pk}/approve/")
    assert response.status_code == 403
    assert response.json()["detail"] == "Only an admin can do this."
    key_request.refresh_from_db()
    assert key_request.status == KeyRequestStatus.PENDING


def test_the_key_can_be_revealed_only_once(member, issued):
    client = api(member)
    listed = client.get(f"/api/v1/key-requests/{issued.pk}/").json()
    assert (listed["status"], listed["can_reveal"]) == ("issued", True)

    first = client.post(f"/api/v1/key-requests/{issued.pk}/reveal/")
    assert first.status_code == 200
    assert first["Cache-Control"] == "no-store"
    secret = first.json()["key"]
    key = ApiKey.objects.get(request=issued)
    assert key.key_hash == key_hash(secret)
    assert secret.startswith(key.prefix)

    second = client.post(f"/api/v1/key-requests/{issued.pk}/reveal/")
    assert second.status_code == 410
    assert second.json() == {
        "detail": "This key was already shown once and cannot be shown again.",
        "field": None,
        "code": "gone",
    }
    issued.refresh_from_db()
    assert issued.sealed_secret == "" and issued.revealed_at is not None
    assert client.get(f"/api/v1/key-requests/{issued.pk}/").json()["can_reveal"] is False


def test_a_key_not_yet_issued_cannot_be_revealed(member, key_request):
    response = api(member).post(f"/api/v1/key-requests/{key_request.pk}/reveal/")
    assert response.status_code == 409
    assert response.json()["detail"] == "The key has not been issued yet."


def test_another_team_cannot_reveal_the_key(stranger, issued):
    response = api(stranger).post(f"/api/v1/key-requests/{issued.pk}/reveal/")
    assert response.status_code == 404
    issued.refresh_from_db()
    assert issued.sealed_secret


def test_keys_are_listed_per_team_without_their_secret(admin, member, stranger, issued):
    key = ApiKey.objects.get()
    rows = api(member).get("/api/v1/keys/").json()["results"]
    assert len(rows) == 1
    row = rows[0]
    assert (row["id"], row["prefix"], row["team_name"], row["endpoint"], row["state"]) == (
        key.pk,
        key.prefix,
        "Data science",
        "iris-prod",
        "active",
    )
    assert row["expires_at"] and row["created_at"] and row["revoked_at"] is None
    assert not {"key_hash", "hash", "secret", "cloud_name"} & set(row)
    assert key.key_hash not in str(rows)
    assert api(stranger).get("/api/v1/keys/").json()["results"] == []
    assert api(stranger).get(f"/api/v1/keys/{key.pk}/").status_code == 404
    assert len(api(admin).get("/api/v1/keys/").json()["results"]) == 1


def test_an_admin_revokes_a_key(admin, issued):
    key = ApiKey.objects.get()
    response = api(admin).post(f"/api/v1/keys/{key.pk}/revoke/")
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["revoked_by"]) == ("revoked", "ada")
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == admin
    assert AuditEvent.objects.filter(action="api_key.revoke", target_id=str(key.pk)).exists()


def test_revoking_a_revoked_key_says_so(admin, issued):
    key = ApiKey.objects.get()
    api(admin).post(f"/api/v1/keys/{key.pk}/revoke/")
    response = api(admin).post(f"/api/v1/keys/{key.pk}/revoke/")
    assert response.status_code == 409
    assert response.json() == {"detail": "This key is already revoked.", "field": None, "code": "conflict"}
    assert AuditEvent.objects.filter(action="api_key.revoke").count() == 1


def test_a_team_member_cannot_revoke_a_key(member, issued):
    key = ApiKey.objects.get()
    response = api(member).post(f"/api/v1/keys/{key.pk}/revoke/")
    assert response.status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None


def test_a_member_lists_the_teams_they_can_request_keys_for(member, stranger, team):
    assert api(member).get("/api/v1/teams/").json()["results"] == [{"id": team.pk, "name": "Data science"}]
    assert [row["name"] for row in api(stranger).get("/api/v1/teams/").json()["results"]] == ["Other team"]
