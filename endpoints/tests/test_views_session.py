"""A signed-in session ends after SESSION_IDLE_SECONDS without a request from the person."""

import time

from django.urls import reverse

from endpoints.middleware import LAST_ACTIVITY


def idle_for(client, seconds: int) -> None:
    session = client.session
    session[LAST_ACTIVITY] = int(time.time()) - seconds
    session.save()


def last_activity(client) -> int:
    return client.session[LAST_ACTIVITY]


def test_a_session_idle_longer_than_the_timeout_is_signed_out(client, member):
    client.force_login(member)
    page = reverse("endpoints:key-list")
    assert client.get(page).status_code == 200
    idle_for(client, 3601)

    response = client.get(page)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={page}"
    assert "_auth_user_id" not in client.session
    assert client.get(page).status_code == 302  # still signed out


def test_activity_within_the_timeout_keeps_the_session_and_counts(client, member):
    client.force_login(member)
    idle_for(client, 3500)
    before = time.time()
    assert client.get(reverse("endpoints:key-list")).status_code == 200
    assert last_activity(client) >= int(before)


def test_the_dashboards_polling_does_not_count_as_activity(client, member):
    client.force_login(member)
    idle_for(client, 3500)
    stale = last_activity(client)
    poll = client.get(reverse("endpoints:key-list"), HTTP_HX_REQUEST="true", HTTP_X_PORTAL_POLL="1")
    assert poll.status_code == 200
    assert last_activity(client) == stale
    idle_for(client, 3601)
    assert client.get(reverse("endpoints:key-list"), HTTP_X_PORTAL_POLL="1").status_code == 302


def test_an_htmx_request_after_the_timeout_sends_the_whole_page_to_log_in(client, member):
    client.force_login(member)
    idle_for(client, 3601)
    response = client.get(reverse("endpoints:key-list"), HTTP_HX_REQUEST="true")
    assert response.status_code == 401
    assert response["HX-Redirect"] == f"{reverse('login')}?next={reverse('endpoints:key-list')}"


def test_an_api_call_on_an_idle_session_answers_401_in_the_api_shape(client, member):
    client.force_login(member)
    idle_for(client, 3601)
    response = client.get("/api/v1/keys/")
    assert response.status_code == 401
    assert response.json() == {
        "detail": "Your session ended after a period of inactivity; sign in again.",
        "field": None,
        "code": "not_authenticated",
    }


def test_the_idle_timeout_is_a_setting(client, member, settings):
    settings.SESSION_IDLE_SECONDS = 60
    client.force_login(member)
    idle_for(client, 61)
    assert client.get(reverse("endpoints:key-list")).status_code == 302


def test_a_session_also_ends_at_its_maximum_age(client, member, settings):
    client.force_login(member)
    response = client.get(reverse("endpoints:key-list"))
    assert response.status_code == 200
    assert client.session.get_expiry_age() == settings.SESSION_COOKIE_AGE == 12 * 3600
