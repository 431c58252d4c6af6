"""The Content-Security-Policy: scripts and styles only from our own files, on every page.

The header alone is not enough: a page with an inline script, an `on...=` handler or a `style=`
attribute would break under it. These tests read the pages the dashboard, the Django admin and
Swagger UI serve; the browser tests then run the dashboard under the policy for real.
"""

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from rest_framework.test import APIClient

from endpoints.services.keys import key_request_approve, key_request_create, key_request_issue

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
INLINE_STYLE = re.compile(r"<style[\s>]|\sstyle\s*=", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
JAVASCRIPT_URL = re.compile(r"(href|src|action)\s*=\s*[\"']?\s*javascript:", re.IGNORECASE)


def directives(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.strip() for part in header.split(";") if part.strip()}


def assert_runs_under_the_policy(response) -> None:
    assert response.status_code == 200
    html = response.content.decode()
    assert not INLINE_SCRIPT.findall(html)
    assert not INLINE_STYLE.findall(html)
    assert not INLINE_HANDLER.findall(html)
    assert not JAVASCRIPT_URL.findall(html)
    policy = directives(response)
    assert policy["script-src"] == "script-src 'self'"
    assert policy["style-src"] == "style-src 'self'"
    assert policy["object-src"] == "object-src 'none'"
    assert policy["frame-ancestors"] == "frame-ancestors 'none'"


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", password="root-password-1")


@pytest.fixture
def issued(admin, member, team, endpoint):
    request = key_request_create(user=member, team=team, endpoint=endpoint, reason="Scoring the catalogue")
    key_request_approve(user=admin, request=request)
    key_request_issue(request_id=request.pk)
    return request


def test_the_log_in_page_runs_under_the_policy(client, db):
    assert_runs_under_the_policy(client.get(reverse("login")))


def test_dashboard_pages_run_under_the_policy(client, admin, member, endpoint, iris_version, issued):
    client.force_login(admin)
    pages = [
        reverse("endpoints:endpoint-list"),
        reverse("endpoints:endpoint-detail", args=[endpoint.name]),
        reverse("endpoints:model-list"),
        reverse("endpoints:key-request-list"),
        reverse("endpoints:key-request-detail", args=[issued.pk]),
        reverse("endpoints:key-list"),
        reverse("endpoints:audit-list"),
    ]
    for page in pages:
        assert_runs_under_the_policy(client.get(page))
    client.force_login(member)
    assert_runs_under_the_policy(client.get(reverse("endpoints:key-request-detail", args=[issued.pk])))
    assert_runs_under_the_policy(client.post(reverse("endpoints:key-request-reveal", args=[issued.pk])))


def test_the_django_admin_runs_under_the_policy(client, superuser, endpoint, issued):
    client.force_login(superuser)
    for page in (
        "/admin/",
        "/admin/endpoints/team/add/",
        f"/admin/endpoints/apikeyrequest/{issued.pk}/change/",
    ):
        assert_runs_under_the_policy(client.get(page))


def test_swagger_ui_loads_its_start_up_script_from_a_url_under_the_policy(db):
    page = APIClient().get("/api/docs/")
    assert_runs_under_the_policy(page)
    script_url = re.search(r'<script src="(/api/docs/\?[^"]*script=[^"]*)"', page.content.decode()).group(1)
    script = APIClient().get(script_url.replace("&amp;", "&"))
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()
