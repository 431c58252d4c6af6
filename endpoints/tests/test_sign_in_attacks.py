"""Attacks on sign-in: guessing passwords at the three doors (the dashboard login, Django admin's
login, the token endpoint) and hiding behind a forged X-Forwarded-For.

Every attack must end in a 4xx that says why: the API's JSON error shape, a page in the dashboard.
"""

import time
from datetime import timedelta

import pytest
from django.contrib.auth import SESSION_KEY
from django.core.management import call_command
from django.test import RequestFactory
from rest_framework.test import APIClient

from endpoints.client_address import client_address
from endpoints.models import ApiToken
from endpoints.sign_in import THROTTLED

TOKEN = "/api/v1/auth/token/"
DASHBOARD = "/accounts/login/"
ADMIN = "/admin/login/"
LOCKED = "sign-in is locked for"


@pytest.fixture
def strict(settings):
    """Three attempts a minute; a lockout far away, so only the throttle is at work."""
    settings.SIGN_IN_RATE = "3/min"
    settings.AXES_FAILURE_LIMIT = 100


@pytest.fixture
def lockout(settings):
    """A lockout after three failures; a throttle far away, so only the lockout is at work."""
    settings.SIGN_IN_RATE = "1000/min"
    settings.AXES_FAILURE_LIMIT = 3


def attempt(door: str, username: str, password: str, **headers):
    """One sign-in attempt at a door, as an attacker would send it."""
    if door == TOKEN:
        return APIClient().post(TOKEN, {"username": username, "password": password}, format="json", **headers)
    return APIClient().post(door, {"username": username, "password": password}, **headers)


def signed_in(response) -> bool:
    return response.status_code == 302 and SESSION_KEY in response.wsgi_request.session


def assert_refused_with_reason(door: str, response, words: str) -> None:
    assert response.status_code == 429
    if door == TOKEN:
        body = response.json()
        assert set(body) == {"detail", "field", "code"}
        assert words in body["detail"]
    else:
        assert response["Content-Type"].startswith("text/html")
        assert words in response.content.decode()
        assert not signed_in(response)


# -- the client address ---------------------------------------------------------------------------------


def request_from(remote: str, forwarded: str | None = None):
    headers = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().post("/accounts/login/", **headers)


def test_with_no_trusted_proxy_x_forwarded_for_is_ignored(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_address(request_from("198.51.100.9", "203.0.113.1")) == "198.51.100.9"


def test_with_trusted_proxies_the_client_is_the_address_the_outermost_one_saw(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    forged_then_real = "10.9.9.9, 203.0.113.1"
    assert client_address(request_from("192.0.2.1", forged_then_real)) == "203.0.113.1"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_address(request_from("192.0.2.1", "10.9.9.9, 203.0.113.1, 192.0.2.2")) == "203.0.113.1"


def test_a_forwarded_address_that_is_not_an_address_falls_back_to_the_connection(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_address(request_from("192.0.2.1", "not-an-address")) == "192.0.2.1"
    assert client_address(request_from("192.0.2.1", "")) == "192.0.2.1"


# -- the throttle ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("door", [TOKEN, DASHBOARD, ADMIN])
def test_changing_x_forwarded_for_does_not_escape_the_throttle(strict, admin, door):
    responses = [
        attempt(door, f"guess{n}", "wrong-password", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}") for n in range(4)
    ]
    assert [response.status_code for response in responses[:3]] == [400 if door == TOKEN else 200] * 3
    assert_refused_with_reason(door, responses[3], THROTTLED)
    assert responses[3]["Retry-After"]


@pytest.mark.parametrize("door", [TOKEN, DASHBOARD, ADMIN])
def test_one_user_name_is_throttled_whatever_address_the_attempts_come_from(strict, settings, admin, door):
    settings.TRUSTED_PROXY_COUNT = 1  # each attempt really comes from another address
    responses = [
        attempt(door, "ada", "wrong-password", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}") for n in range(4)
    ]
    assert_refused_with_reason(door, responses[3], THROTTLED)


def test_behind_a_trusted_proxy_other_addresses_are_not_throttled_together(strict, settings, admin):
    settings.TRUSTED_PROXY_COUNT = 1
    codes = [
        attempt(TOKEN, f"guess{n}", "wrong-password", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code
        for n in range(6)
    ]
    assert codes == [400] * 6


def test_a_throttled_client_is_refused_even_with_the_right_password(strict, admin):
    for n in range(3):
        attempt(TOKEN, f"guess{n}", "wrong-password")
    response = attempt(TOKEN, "ada", "ada-password-1")
    assert_refused_with_reason(TOKEN, response, THROTTLED)
    assert not ApiToken.objects.exists()


# -- the lockout -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("door", [TOKEN, DASHBOARD, ADMIN])
def test_a_locked_account_refuses_the_right_password_and_says_why(lockout, admin, door):
    for _ in range(3):
        attempt(door, "ada", "wrong-password")
    response = attempt(door, "ada", "ada-password-1")
    assert_refused_with_reason(door, response, LOCKED)
    if door == TOKEN:
        assert response.json()["code"] == "locked_out"
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("door", [TOKEN, DASHBOARD, ADMIN])
def test_failures_from_one_address_against_many_accounts_lock_the_address(lockout, admin, member, door):
    for n in range(3):
        attempt(door, f"someone{n}", "wrong-password", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
    response = attempt(door, "ada", "ada-password-1")
    assert_refused_with_reason(door, response, LOCKED)


def test_a_lock_on_one_account_leaves_others_signing_in_from_elsewhere(lockout, settings, admin, member):
    settings.TRUSTED_PROXY_COUNT = 1
    for _ in range(3):
        attempt(TOKEN, "ada", "wrong-password", HTTP_X_FORWARDED_FOR="203.0.113.1")
    assert attempt(TOKEN, "ada", "ada-password-1", HTTP_X_FORWARDED_FOR="203.0.113.2").status_code == 429
    response = attempt(TOKEN, "tom", "tom-password-1", HTTP_X_FORWARDED_FOR="203.0.113.2")
    assert response.status_code == 200
    assert response.json()["token"]


def test_a_lock_ends_after_the_cool_off(lockout, settings, admin):
    # The database cache keeps expiry times to the second: a lock of 3 s lasts 2 to 3 s.
    settings.AXES_COOLOFF_TIME = timedelta(seconds=3)
    for _ in range(3):
        attempt(TOKEN, "ada", "wrong-password")
    assert attempt(TOKEN, "ada", "ada-password-1").status_code == 429
    time.sleep(3.2)
    assert attempt(TOKEN, "ada", "ada-password-1").status_code == 200


def test_attempts_during_a_lock_do_not_prolong_it(lockout, settings, admin):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=4)
    for _ in range(3):
        attempt(TOKEN, "ada", "wrong-password")
    locked_at = time.monotonic()  # the lock ends at most 4 s from here
    time.sleep(1.5)
    # Counted, this attempt would move the end of the lock to 4.5 s or later.
    assert attempt(TOKEN, "ada", "wrong-password").status_code == 429
    time.sleep(max(0.0, locked_at + 4.2 - time.monotonic()))
    assert attempt(TOKEN, "ada", "ada-password-1").status_code == 200


def test_an_admin_unlocks_a_user_name_before_the_cool_off(lockout, settings, admin):
    settings.TRUSTED_PROXY_COUNT = 1
    for _ in range(3):
        attempt(TOKEN, "ada", "wrong-password", HTTP_X_FORWARDED_FOR="203.0.113.66")
    assert attempt(TOKEN, "ada", "ada-password-1", HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 429
    call_command("axes_reset_username", "ada", verbosity=0)
    assert attempt(TOKEN, "ada", "ada-password-1", HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 200
    # The attacker's address stays locked.
    assert attempt(TOKEN, "tom", "anything", HTTP_X_FORWARDED_FOR="203.0.113.66").status_code == 429
