"""A member who asks for a key for a team they are not in learns nothing about that team: the
answer is the one a team that does not exist gets, field, words and status, in the API and in the
dashboard alike."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from endpoints.models import ApiKeyRequest, Team
from endpoints.services.errors import ServiceError
from endpoints.services.keys import UNKNOWN_TEAM, key_request_create

REASON = "Scoring the catalogue nightly"


@pytest.fixture
def finance(db):
    return Team.objects.create(name="Finance")


def missing_team_id() -> int:
    return (max(Team.objects.values_list("pk", flat=True), default=0)) + 1000


def ask_api(user, team_id):
    client = APIClient()
    client.force_authenticate(user)
    body = {"endpoint": "iris-prod", "team": team_id, "reason": REASON}
    return client.post("/api/v1/key-requests/", body, format="json")


def ask_dashboard(user, team_id):
    client = Client()
    client.force_login(user)
    body = {"endpoint": "iris-prod", "team": team_id, "reason": REASON, "valid_days": 30}
    return client.post(reverse("endpoints:key-request-create"), body)


def test_the_api_answers_another_teams_id_as_it_answers_a_missing_one(member, endpoint, finance):
    theirs = ask_api(member, finance.pk)
    missing = ask_api(member, missing_team_id())
    assert theirs.status_code == missing.status_code == 422
    assert theirs.json() == missing.json()
    assert (theirs.json()["field"], theirs.json()["detail"]) == ("team", UNKNOWN_TEAM)
    assert "Finance" not in theirs.content.decode()
    assert not ApiKeyRequest.objects.exists()


def test_the_dashboard_answers_another_teams_id_as_it_answers_a_missing_one(member, endpoint, finance):
    theirs = ask_dashboard(member, finance.pk)
    missing = ask_dashboard(member, missing_team_id())
    assert theirs.status_code == missing.status_code == 400
    assert theirs.context["form"].errors == missing.context["form"].errors == {"team": [UNKNOWN_TEAM]}
    assert "Finance" not in theirs.content.decode()
    assert not ApiKeyRequest.objects.exists()


def test_an_id_that_is_not_a_number_gets_the_same_answer(member, endpoint):
    assert ask_api(member, "finance").json()["detail"] == UNKNOWN_TEAM
    assert ask_dashboard(member, "finance").context["form"].errors == {"team": [UNKNOWN_TEAM]}


def test_the_service_refuses_another_team_in_the_same_words(member, endpoint, finance):
    with pytest.raises(ServiceError) as refused:
        key_request_create(user=member, team=finance, endpoint=endpoint, reason=REASON)
    assert (refused.value.field, refused.value.message) == ("team", UNKNOWN_TEAM)
    assert "Finance" not in str(refused.value)


def test_an_admin_may_still_ask_for_any_team(admin, endpoint, finance):
    response = ask_api(admin, finance.pk)
    assert response.status_code == 201
    assert response.json()["team_name"] == "Finance"
