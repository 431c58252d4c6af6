"""The Cloud setup page: the Google Cloud doctor's checks for admins, against the fake Google servers."""

import html
import re

import grpc
from django.urls import reverse

from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import BUCKET, GATEWAY_SA, PROJECT
from worker.runtimes.gcp.doctor import PRINCIPAL, PROJECT_ROLES, REQUIRED_APIS

SETUP = reverse("endpoints:cloud-setup")
WORKER = f"serviceAccount:portal-worker@{PROJECT}.iam.gserviceaccount.com"
CHECKS = 1 + len(REQUIRED_APIS) + 4 + len(PROJECT_ROLES) + 5  # ... and API Gateway's and Armor's limits


def rows(page: str) -> list[tuple[str, str, str]]:
    """(result, check, detail with its fix) of each row of the checks table, as text."""
    body = page.split('<table class="table doctor">')[1].split("</table>")[0]
    found = []
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)[1:]:
        cells = [
            html.unescape(re.sub(r"<[^>]+>|\s+", " ", cell)).split()
            for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
        ]
        found.append(tuple(" ".join(words) for words in cells))
    return found


def fixes(page: str) -> list[str]:
    return [html.unescape(fix) for fix in re.findall(r"<pre [^>]*><code>(.*?)</code></pre>", page, re.S)]


def test_an_admin_sees_every_check_pass_on_a_set_up_project(client, admin, gcp_settings, fakes):
    client.force_login(admin)

    page = client.get(SETUP).content.decode()

    checks = rows(page)
    assert len(checks) == CHECKS
    assert [result for result, _, _ in checks] == ["PASS"] * CHECKS
    assert checks[0] == ("PASS", "Credentials", "anonymous credentials (endpoint overrides)")
    assert ("PASS", "API run.googleapis.com", "enabled") in checks
    assert ("PASS", "Role roles/apigateway.admin", "held") in checks
    assert "Ready to deploy:</strong> all" in page and "fail" not in page.split("<table")[0].lower()
    assert fixes(page) == []
    for fact in (PROJECT, "us-central1", f"gs://{BUCKET}", GATEWAY_SA):
        assert f"<code>{fact}</code>" in page
    assert f'action="{SETUP}"' in page and ">Check again</button>" in page


def test_on_a_fresh_project_each_failing_check_shows_its_fix_to_copy(client, admin, gcp_settings, fakes):
    fakes.fresh()
    fakes.project.disabled.clear()  # with its APIs on, every other check runs
    client.force_login(admin)

    page = client.get(SETUP, {"member": WORKER}).content.decode()

    checks = rows(page)
    failed = [(name, detail) for result, name, detail in checks if result == "FAIL"]
    assert [name for result, name, _ in checks if result == "PASS"] == [
        "Credentials",
        *[f"API {api}" for api in REQUIRED_APIS],
        "API Gateway gateways",
        "API Gateway APIs",
        "API Gateway configs",
        "Cloud Armor SECURITY_POLICIES",
        "Cloud Armor SECURITY_POLICY_RULES",
    ]
    assert f"{len(failed)} checks fail</strong> of {len(checks)}" in page
    assert "Ready to deploy" not in page
    expected = [
        f"gcloud storage buckets create gs://{BUCKET} --project={PROJECT} --location=us-central1",
        f"gcloud iam service-accounts create portal-gateway --project={PROJECT}",
    ] + [
        f"gcloud projects add-iam-policy-binding {PROJECT} --member={WORKER} --role={role}"
        for role in PROJECT_ROLES
    ]
    assert fixes(page) == expected
    assert len(failed) == len(expected)
    for (_, detail), fix in zip(failed, expected, strict=True):
        assert detail.endswith(f"Fix Copy {fix}")
    assert ("Artifact bucket", f"gs://{BUCKET} does not exist Fix Copy {expected[0]}") in failed
    assert page.count("data-copy=") == len(expected)


def test_on_a_fresh_project_the_apis_come_first(client, admin, gcp_settings, fakes):
    fakes.fresh()
    client.force_login(admin)

    page = client.get(SETUP, {"member": WORKER}).content.decode()

    off = [api for api in REQUIRED_APIS if api in fakes.project.disabled]
    assert off and fixes(page)[: len(off)] == [
        f"gcloud services enable {api} --project={PROJECT}" for api in off
    ]
    assert (
        "FAIL",
        "API iam.googleapis.com",
    ) == rows(page)[1 + REQUIRED_APIS.index("iam.googleapis.com")][:2]
    assert "the Gateway service account checks run once it is" in page


def test_fixes_name_a_placeholder_without_a_principal_and_a_malformed_one_is_refused(
    client, admin, gcp_settings, fakes
):
    fakes.projects.permissions.revoke_all()
    client.force_login(admin)

    page = client.get(SETUP, {"member": "serviceAccount:x; rm -rf /"}).content.decode()

    assert "Give a principal as serviceAccount:, user: or group: and an e-mail." in page
    assert fixes(page)[0] == (
        f"gcloud projects add-iam-policy-binding {PROJECT} --member={PRINCIPAL} --role=roles/run.admin"
    )


def test_a_check_google_refuses_shows_googles_answer(client, admin, gcp_settings, fakes):
    fakes.usage.fail_next(1, grpc.StatusCode.PERMISSION_DENIED, "Service Usage API is disabled.")
    client.force_login(admin)

    page = client.get(SETUP).content.decode()

    (failed,) = [row for row in rows(page) if row[0] == "FAIL"]
    assert failed[1] == "APIs" and "Service Usage API is disabled." in failed[2]
    assert "1 check fails</strong>" in page
    assert fixes(page) == []


def test_team_members_and_anonymous_users_cannot_see_it(client, member, gcp_settings, fakes):
    assert client.get(SETUP).status_code == 302  # to the log-in page
    client.force_login(member)
    assert client.get(SETUP).status_code == 403
    assert SETUP not in client.get(reverse("endpoints:endpoint-list")).content.decode()
    assert fakes.methods() == {}


def test_the_local_runtime_needs_no_cloud_setup(client, admin, settings):
    settings.RUNTIME = "local"
    client.force_login(admin)

    nav = client.get(reverse("endpoints:endpoint-list")).content.decode()
    page = client.get(SETUP).content.decode()

    assert f'href="{SETUP}"' in nav
    assert 'aria-current="page">Cloud setup</a>' in page
    assert (
        "<code>local</code> runtime: serving processes on this machine. It needs no Google Cloud setup."
        in page
    )
    assert "<code>RUNTIME=gcp</code>" in page and "Deploy to your Google Cloud project" in page
    assert "<table" not in page
