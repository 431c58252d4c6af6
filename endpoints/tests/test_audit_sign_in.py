"""The audit log keeps sign-ins, failed sign-ins, lockouts and team membership changes, wherever
they happen (the dashboard, Django admin, the token endpoint, code)."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from endpoints.models import AuditEvent, Team

TOKEN = "/api/v1/auth/token/"
DASHBOARD = "/accounts/login/"
ADMIN = "/admin/login/"


@pytest.fixture
def lockout(settings):
    settings.SIGN_IN_RATE = "1000/min"
    settings.AXES_FAILURE_LIMIT = 3


def attempt(door: str, username: str, password: str, **headers):
    if door == TOKEN:
        return APIClient().post(TOKEN, {"username": username, "password": password}, format="json", **headers)
    return APIClient().post(door, {"username": username, "password": password}, **headers)


def actions() -> list[str]:
    return list(AuditEvent.objects.order_by("id").values_list("action", flat=True))


def test_sign_ins_failures_and_the_lockout_are_audited(lockout, admin):
    assert attempt(DASHBOARD, "ada", "ada-password-1", REMOTE_ADDR="198.51.100.7").status_code == 302
    for _ in range(3):
        attempt(DASHBOARD, "ada", "wrong-password", REMOTE_ADDR="198.51.100.7")
    attempt(DASHBOARD, "ada", "ada-password-1", REMOTE_ADDR="198.51.100.7")
    assert actions() == [
        "sign_in.success",
        "sign_in.fail",
        "sign_in.fail",
        "sign_in.lockout",
        "sign_in.fail",
        "sign_in.fail",
    ]
    success = AuditEvent.objects.get(action="sign_in.success")
    assert success.actor == admin
    assert success.details == {"address": "198.51.100.7", "path": DASHBOARD}
    lock = AuditEvent.objects.get(action="sign_in.lockout")
    assert (lock.target_id, lock.target_repr) == (str(admin.pk), "ada")
    assert lock.details["failures"] == 3
    failures = AuditEvent.objects.filter(action="sign_in.fail").order_by("id")
    assert [event.details["locked"] for event in failures] == [False, False, False, True]
    assert all("password" not in str(event.details) for event in AuditEvent.objects.all())


def test_a_failed_sign_in_for_nobody_is_audited_with_the_name_tried(db):
    attempt(TOKEN, "mallory", "wrong-password")
    event = AuditEvent.objects.get()
    assert (event.action, event.actor) == ("sign_in.fail", None)
    assert (event.target_type, event.target_id) == ("User", "")
    assert event.target_repr == "mallory"
    assert event.details["path"] == TOKEN


@pytest.mark.parametrize("door", [TOKEN, ADMIN])
def test_a_sign_in_at_the_other_doors_is_audited_with_its_path(admin, door):
    response = attempt(door, "ada", "ada-password-1")
    assert response.status_code in (200, 302)
    event = AuditEvent.objects.get(action="sign_in.success")
    assert (event.actor, event.details["path"]) == (admin, door)
    if door == TOKEN:
        assert actions() == ["sign_in.success", "api_token.issue"]


@pytest.mark.parametrize("door", [TOKEN, ADMIN])
def test_a_lockout_at_the_other_doors_is_audited(lockout, admin, door):
    for _ in range(3):
        attempt(door, "ada", "wrong-password")
    assert actions() == ["sign_in.fail", "sign_in.fail", "sign_in.lockout", "sign_in.fail"]


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", password="root-password-1")


def test_team_membership_changed_in_django_admin_is_audited_with_who_did_it(
    client, superuser, team, member, admin
):
    client.force_login(superuser)
    AuditEvent.objects.all().delete()
    url = f"/admin/endpoints/team/{team.pk}/change/"
    response = client.post(url, {"name": team.name, "members": [member.pk, admin.pk], "_save": "Save"})
    assert response.status_code == 302
    added = AuditEvent.objects.get(action="team.member_add")
    assert (added.actor, added.target_repr, added.details) == (superuser, team.name, {"members": ["ada"]})

    client.post(url, {"name": team.name, "members": [admin.pk], "_save": "Save"})
    removed = AuditEvent.objects.get(action="team.member_remove")
    assert (removed.actor, removed.details) == (superuser, {"members": ["tom"]})


def test_team_membership_changed_in_code_is_audited_from_either_side(team, member, admin):
    other = Team.objects.create(name="Finance")
    AuditEvent.objects.all().delete()
    admin.teams.add(team, other)
    member.teams.remove(team)
    other.members.remove(member)  # not a member: nothing changes, nothing is recorded
    team.members.clear()
    rows = [
        (event.action, event.target_repr, event.details["members"], event.actor)
        for event in AuditEvent.objects.order_by("id")
    ]
    assert rows == [
        ("team.member_add", "Data science", ["ada"], None),
        ("team.member_add", "Finance", ["ada"], None),
        ("team.member_remove", "Data science", ["tom"], None),
        ("team.member_remove", "Data science", ["ada"], None),
    ]
