"""Passwords: at least 12 characters, not a common one, not like the user's own name or e-mail."""

import pytest
from django.core.management import CommandError, call_command

CHANGE = "/accounts/password_change/"


def change_password(client, user, old: str, new: str):
    client.force_login(user)
    return client.post(CHANGE, {"old_password": old, "new_password1": new, "new_password2": new})


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("Tr0ub4dor&3", "too short. It must contain at least 12 characters"),
        ("password1234", "too common"),
        ("qwertyuiop123", "too common"),
        ("tom.hopper.tom", "too similar to the"),
    ],
)
def test_a_weak_new_password_is_refused_with_the_reason(client, member, password, reason):
    member.email = "tom.hopper@example.com"
    member.save()
    response = change_password(client, member, "tom-password-1", password)
    assert response.status_code == 200
    assert reason in response.content.decode()
    member.refresh_from_db()
    assert member.check_password("tom-password-1")


def test_a_long_uncommon_password_is_accepted(client, member):
    response = change_password(client, member, "tom-password-1", "violet-harbour-kettle")
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.check_password("violet-harbour-kettle")


def test_the_demo_setup_refuses_a_weak_admin_password(settings, db):
    settings.DEMO_ADMIN_PASSWORD = "admin123"
    with pytest.raises(CommandError, match="DEMO_ADMIN_PASSWORD is too weak: .*This password is too short"):
        call_command("demo_setup")
