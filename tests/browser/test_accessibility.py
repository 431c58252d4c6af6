"""Every dashboard page, walked in headless Chromium as an admin and as a team member, at 1440 and
390 pixels wide: axe-core (from npm, `scripts/install dev`, injected into the page) finds no
serious or critical violation, the page is never wider than the window (wide tables scroll inside
their card), and the row actions (Roll back, Rotate, Revoke, Remove) can be brought into view and
clicked. Run with `scripts/test tests/browser/test_accessibility.py`.
"""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect, sync_playwright

from endpoints.models import AllowlistEntry, Deployment, DeploymentStatus, Endpoint
from endpoints.services.allowlist import allowlist_add
from endpoints.services.deployments import deployment_finish, deployment_request
from endpoints.services.endpoints import endpoint_create
from endpoints.services.keys import key_request_approve, key_request_create, key_request_issue
from endpoints.services.tokens import api_token_issue
from tests.browser.test_golden_path import CHROMIUM_ARGS

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = (1440, 390)
BLOCKING = ("serious", "critical")


def make_live(admin, endpoint, version, n: int) -> Deployment:
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=version)
    Deployment.objects.filter(pk=deployment.pk).update(
        status=DeploymentStatus.RUNNING,
        started_at=timezone.now() - timedelta(seconds=30),
        resources={
            "url": f"http://{endpoint.name}-d{deployment.pk}.memory.invalid",
            "revision": f"{endpoint.name}-d{deployment.pk}",
            "previous_revision": None if n == 0 else f"{endpoint.name}-d{deployment.pk - 1}",
        },
        steps=[{"step": "start", "title": "Start", "state": "done", "seconds": 0.4, "message": "Started."}],
    )
    deployment_finish(deployment_id=deployment.pk)
    return deployment


@pytest.fixture
def dashboard(transactional_db, memory_runtime, sent, admin, member, team, iris_version):
    """A dashboard with something on every page: live, stopped, failed and degraded endpoints, a
    rollback target, allowlists, keys in every state, pending and decided requests, a token."""
    iris = endpoint_create(user=admin, name="iris-prod", description="Flowers, every night.")
    first = make_live(admin, iris, iris_version, 0)
    make_live(admin, iris, iris_version, 1)
    failed = deployment_request(user=admin, endpoint=iris, model_version=iris_version)
    Deployment.objects.filter(pk=failed.pk).update(
        status=DeploymentStatus.FAILED, error="Copy the artifact: disk full", finished_at=timezone.now()
    )
    allowlist_add(user=admin, endpoint=iris, cidr="203.0.113.0/24", note="Office")
    allowlist_add(user=admin, endpoint=iris, cidr="2001:db8::/32", note="")
    stopped = endpoint_create(user=admin, name="stopped-one", access_mode="ip_allowlist")
    make_live(admin, stopped, iris_version, 0)
    Endpoint.objects.filter(pk=stopped.pk).update(stopped_at=timezone.now())
    endpoint_create(user=admin, name="never-deployed", access_mode="open")
    issued = key_request_create(user=member, team=team, endpoint=iris, reason="Nightly scoring of flowers")
    key_request_approve(user=admin, request=issued, note="ok")
    key_request_issue(request_id=issued.pk)
    pending = key_request_create(user=member, team=team, endpoint=iris, reason="A second batch job, please")
    api_token_issue(user=admin, address="203.0.113.9")
    api_token_issue(user=member, address="203.0.113.10")
    finished_load_test(admin, iris)
    return {
        "iris": iris,
        "first": first,
        "failed": failed,
        "issued": issued,
        "pending": pending,
        "entry": AllowlistEntry.objects.filter(endpoint=iris).first(),
    }


def finished_load_test(admin, endpoint) -> None:
    """A load test of `endpoint` that ended, with its figures as the worker stores them (its
    iris-prod is on the memory runtime, which serves nothing to test)."""
    from endpoints.models import LoadTest, LoadTestStatus
    from endpoints.services.load_tests import load_test_start

    test = load_test_start(user=admin, endpoint=endpoint, users=2, spawn_rate=2, duration_seconds=3)
    snapshots = [
        {
            "t": t,
            "users": 2,
            "requests": 90 + t,
            "failures": t - 1,
            "rps": 90.0 + t,
            "p50": 8,
            "p95": 20,
            "p99": 31,
        }
        for t in (1, 2, 3)
    ]
    summary = {
        "final": True, "stopped": False, "seconds": 3.0, "requests": 276, "failures": 3, "rps": 92.0,
        "p50": 8, "p95": 20, "p99": 31, "avg": 9.5, "max": 40.0,
        "failures_by_reason": [{"name": "batch of 3 rows", "reason": "HTTP 503: busy", "count": 3}],
    }  # fmt: skip
    LoadTest.objects.filter(pk=test.pk).update(
        status=LoadTestStatus.DONE, timeseries=snapshots, summary=summary, finished_at=timezone.now()
    )


def pages_for(role: str, data: dict) -> list[str]:
    iris, version = data["iris"].name, "models/iris/v1/"
    common = [
        "/",
        f"/endpoints/{iris}/",
        f"/endpoints/{iris}/traffic/",
        "/endpoints/stopped-one/",
        "/endpoints/never-deployed/",
        f"/deployments/{data['first'].pk}/",
        f"/deployments/{data['failed'].pk}/",
        "/models/",
        "/models/iris/",
        f"/{version}",
        "/key-requests/",
        "/key-requests/new/",
        f"/key-requests/{data['issued'].pk}/",
        "/keys/",
        "/tokens/",
    ]
    if role == "member":
        return [*common, "/audit/"]  # the page that says it is not allowed
    return [
        *common,
        f"/key-requests/{data['pending'].pk}/",
        "/new-endpoint/",
        f"/endpoints/{iris}/settings/",
        f"/endpoints/{iris}/delete/",
        f"/endpoints/{iris}/logs/",
        "/new-model/",
        "/models/iris/upload/",
        "/audit/",
        "/cloud-setup/",
    ]


# What sticks out past the window's right edge (the outermost such elements), for the failure message.
OVERFLOWING = """() => {
  const clipped = (el) => {
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== "visible") return true;
    }
    return false;
  };
  const out = [...document.body.querySelectorAll("*")].filter(
    (el) => el.getBoundingClientRect().right > window.innerWidth + 1 && !clipped(el));
  return out.filter((el) => !out.includes(el.parentElement)).slice(0, 5).map(
    (el) => el.tagName.toLowerCase() + (el.className ? "." + String(el.className).split(" ").join(".") : "")
      + " " + Math.round(el.getBoundingClientRect().width) + "px");
}"""


# Whether a person can scroll to the element: no box around it cuts off what overflows it.
SCROLLABLE_TO = """(el) => {
  for (let up = el.parentElement; up; up = up.parentElement) {
    const overflow = getComputedStyle(up).overflowX;
    if ((overflow === "hidden" || overflow === "clip") && up.scrollWidth > up.clientWidth + 1) return false;
  }
  return true;
}"""


def serious_violations(page: Page) -> list[str]:
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    found = []
    for violation in result["violations"]:
        if violation["impact"] in BLOCKING:
            targets = [", ".join(node["target"]) for node in violation["nodes"][:5]]
            found.append(f"{violation['id']} ({violation['impact']}): {violation['help']} at {targets}")
    return found


def walk(base: str, username: str, password: str, pages: list[str], width: int, tmp_path) -> dict:
    """Every page's serious violations and overflow at `width` (what is wrong, by URL)."""
    problems: dict[str, list[str]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        # axe is injected as a script of its own, which the portal's CSP would (rightly) refuse.
        context = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)
        page = context.new_page()
        page.set_default_timeout(30_000)
        try:
            login = f"{base}/accounts/login/"
            page.goto(login)
            problems[login] = serious_violations(page)
            page.get_by_label("Username").fill(username)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"{base}/")
            for path in [*pages, "/no-such-page/"]:
                page.goto(base + path)
                page.wait_for_load_state("networkidle")
                found = serious_violations(page)
                wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                if wide > 1:
                    sticking_out = page.evaluate(OVERFLOWING)
                    found.append(f"the page is {wide} px wider than the {width} px window: {sticking_out}")
                if found:
                    problems[path] = found
                    page.screenshot(
                        path=str(tmp_path / f"{username}-{width}-{path.strip('/').replace('/', '_')}.png")
                    )
        finally:
            browser.close()
    return {url: found for url, found in problems.items() if found}


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_an_admin_sees_passes_axe_and_fits_the_window(dashboard, live_server, width, tmp_path):
    problems = walk(live_server.url, "ada", "ada-password-1", pages_for("admin", dashboard), width, tmp_path)
    assert not problems, "\n".join(f"{url}: {found}" for url, items in problems.items() for found in items)


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_a_team_member_sees_passes_axe_and_fits_the_window(
    dashboard, live_server, width, tmp_path
):
    problems = walk(live_server.url, "tom", "tom-password-1", pages_for("member", dashboard), width, tmp_path)
    assert not problems, "\n".join(f"{url}: {found}" for url, items in problems.items() for found in items)


@pytest.mark.parametrize(
    ("where", "buttons"),
    [
        ("endpoint", ("Roll back to this", "Rotate", "Revoke", "Remove")),
        ("/keys/", ("Rotate", "Revoke")),
        ("/tokens/", ("Revoke",)),
    ],
)
def test_row_actions_can_be_reached_and_clicked_at_390_pixels(dashboard, live_server, where, buttons):
    """Roll back, Rotate, Revoke and Remove sit at the end of wide rows: they must come into view."""
    path = f"/endpoints/{dashboard['iris'].name}/" if where == "endpoint" else where
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 390, "height": 844})
        try:
            page.goto(f"{live_server.url}/accounts/login/")
            page.get_by_label("Username").fill("ada")
            page.get_by_label("Password").fill("ada-password-1")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"{live_server.url}/")
            page.goto(live_server.url + path)
            for name in buttons:
                button = page.get_by_role("button", name=name, exact=True).first
                assert button.evaluate(SCROLLABLE_TO), f"{name} is cut off in a box that does not scroll"
                button.scroll_into_view_if_needed()
                box = button.bounding_box()
                assert box is not None, name
                assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (name, box)
                # Visible, enabled and the topmost element where it is: a real click would land.
                button.click(trial=True)
        finally:
            browser.close()


def test_roll_back_and_redeploy_ask_first_saying_what_changes_and_a_no_changes_nothing(
    dashboard, live_server
):
    base = live_server.url
    first = dashboard["first"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.set_default_timeout(30_000)
        asked: list[str] = []
        try:
            page.goto(f"{base}/accounts/login/")
            page.get_by_label("Username").fill("ada")
            page.get_by_label("Password").fill("ada-password-1")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"{base}/")
            page.goto(f"{base}/deployments/{first.pk}/")
            page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
            page.get_by_role("button", name="Roll back to this").click()
            # confirm() answers before the click returns: a "no" sent nothing, the page stays.
            assert page.url == f"{base}/deployments/{first.pk}/"
            assert asked == [
                f"Roll iris-prod back to iris v1 (deployment #{first.pk})? It is deployed again and takes "
                f"all the traffic once ready. iris v1 (deployment #{first.pk + 1}, live now) stops serving."
            ]
            page.once("dialog", lambda dialog: dialog.accept())
            page.get_by_role("button", name="Roll back to this").click()
            page.wait_for_url(f"{base}/deployments/*/")
            assert page.url != f"{base}/deployments/{first.pk}/"
            assert "Rolling back to iris v1" in page.locator(".messages").inner_text()
        finally:
            browser.close()


def test_a_range_of_every_address_is_confirmed_in_the_page_before_it_is_added(dashboard, live_server):
    base = live_server.url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(30_000)
        try:
            page.goto(f"{base}/accounts/login/")
            page.get_by_label("Username").fill("ada")
            page.get_by_label("Password").fill("ada-password-1")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"{base}/")
            page.goto(f"{base}/endpoints/{dashboard['iris'].name}/")
            allowlist = page.locator("#allowlist")
            allowlist.get_by_label("Address or range").fill("0.0.0.0/0")
            allowlist.get_by_role("button", name="Add", exact=True).click()
            box = allowlist.get_by_role("alertdialog")
            expect(box).to_contain_text("0.0.0.0/0 lets everyone in.")
            expect(box).to_contain_text("Every IPv4 address passes iris-prod's address check")
            expect(allowlist.locator("tbody")).not_to_contain_text("0.0.0.0/0")
            box.get_by_role("button", name="Add it and let everyone in").click()
            expect(allowlist.locator("tbody")).to_contain_text("0.0.0.0/0")
            expect(allowlist.get_by_role("alertdialog")).to_have_count(0)
        finally:
            browser.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_without_javascript_a_rollback_asks_on_a_page_that_passes_axe_then_rolls_back(
    dashboard, live_server, width
):
    """A browser that runs no script gets the question as a page, with what the runtime changes."""
    base, first = live_server.url, dashboard["first"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        scriptless = browser.new_context(viewport={"width": width, "height": 900}, java_script_enabled=False)
        checker = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)
        try:
            for context in (scriptless, checker):
                page = context.new_page()
                page.set_default_timeout(30_000)
                page.goto(f"{base}/accounts/login/")
                page.get_by_label("Username").fill("ada")
                page.get_by_label("Password").fill("ada-password-1")
                page.get_by_role("button", name="Log in").click()
                page.wait_for_url(f"{base}/")
                page.goto(f"{base}/deployments/{first.pk}/")
                if context is checker:  # sent as a browser without script would send it
                    page.locator("form[data-confirm]").evaluate("form => form.submit()")
                    page.wait_for_load_state("networkidle")
                    assert not serious_violations(page)
                    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
                    continue
                page.get_by_role("button", name="Roll back to this").click()
                question = page.get_by_role("alertdialog")
                expect(question).to_contain_text(f"Roll iris-prod back to iris v1 (deployment #{first.pk})?")
                expect(question.locator("table")).to_contain_text("Change")
                question.get_by_role("button", name="Roll back").click()
                page.wait_for_url(f"{base}/deployments/*/")
        finally:
            browser.close()
    # The fixture's four deployments and the one rollback: asking queued nothing, in either browser.
    assert Deployment.objects.count() == 5
    assert Deployment.objects.latest("pk").rollback_of_id == first.pk
