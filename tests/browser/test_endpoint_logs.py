"""The log panel on the endpoint page, in headless Chromium, on a real serving process: a call the
serving process refused shows with its reason, a later one arrives while the page is open, the
filters narrow it, and it reads well at 390 pixels with no serious axe-core finding.
Run with `scripts/test tests/browser`."""

import time

import httpx
import pytest
from playwright.sync_api import expect

from endpoints.models import Deployment, DeploymentStatus, Endpoint
from endpoints.services.deployments import deployment_request
from tests.browser.test_golden_path import SETOSA, SLOW, browser_page, log_in  # noqa: F401 (a fixture)
from tests.browser.test_traffic_charts import serious_violations

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def live_url(celery_worker_process, admin, endpoint, iris_version) -> str:
    """iris deployed by the worker to a real serving process; its URL (before the browser starts)."""
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deadline = time.monotonic() + SLOW / 1000
    while time.monotonic() < deadline:
        deployment.refresh_from_db()
        if deployment.status in (DeploymentStatus.READY, DeploymentStatus.FAILED):
            break
        time.sleep(0.2)
    assert deployment.status == DeploymentStatus.READY, celery_worker_process.log_text()[-4000:]
    return Endpoint.objects.get(pk=endpoint.pk).public_url


def test_the_panel_shows_a_refused_calls_line_and_follows_the_log(live_server, live_url, browser_page):  # noqa: F811
    refused = httpx.post(f"{live_url}/predict", json=SETOSA, timeout=10)
    assert refused.status_code == 401
    reason = refused.json()["error"]
    page = browser_page
    log_in(page, live_server.url, "ada", "ada-password-1")
    page.goto(f"{live_server.url}/endpoints/iris-prod/")

    panel = page.locator("#logs")
    lines = panel.get_by_role("list", name="Log entries, newest last")
    line = lines.get_by_role("listitem").filter(has_text="401 POST /predict")
    expect(line).to_be_visible(timeout=15_000)
    expect(line).to_contain_text(reason)
    expect(line.locator(".log-level")).to_have_text("WARNING")
    expect(panel.get_by_role("status")).to_contain_text("following the log")
    assert serious_violations(page, "#logs") == []

    # A call refused while the page is open arrives without a reload.
    page.evaluate("window.notReloaded = true")
    assert httpx.get(f"{live_url}/no-such-route", timeout=10).status_code == 404
    expect(lines.get_by_role("listitem").filter(has_text="404 GET /no-such-route")).to_be_visible(
        timeout=15_000
    )
    assert page.evaluate("window.notReloaded") is True

    # Filters: errors only hides both refusals; the text finds one of them.
    panel.get_by_label("Level").select_option("ERROR")
    expect(line).to_have_count(0)
    panel.get_by_label("Level").select_option("")
    panel.get_by_label("Contains").fill("no-such")
    expect(lines.get_by_role("listitem").filter(has_text="404 GET /no-such-route")).to_be_visible()
    expect(line).to_have_count(0)
    panel.get_by_label("Contains").fill("")
    expect(line).to_be_visible()

    # Pausing stops following; the button says whether it is on.
    follow = panel.get_by_role("button", name="Follow new entries")
    expect(follow).to_have_attribute("aria-pressed", "true")
    follow.click()
    expect(follow).to_have_attribute("aria-pressed", "false")
    follow.click()

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(line).to_be_visible(timeout=15_000)
    # The panel fits (the page's other tables are another part's business): nothing in it is
    # wider than it, and it is inside the viewport.
    assert panel.evaluate("e => e.scrollWidth <= e.clientWidth")
    assert lines.evaluate("e => e.scrollWidth <= e.clientWidth")
    box = panel.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert serious_violations(page, "#logs") == []


def test_the_logs_own_page_reads_it_without_javascript(live_server, live_url, admin, tmp_path):
    assert httpx.post(f"{live_url}/predict", json=SETOSA, timeout=10).status_code == 401
    from playwright.sync_api import sync_playwright

    from tests.browser.test_golden_path import CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_context(java_script_enabled=False).new_page()
        try:
            page.goto(f"{live_server.url}/accounts/login/")
            page.get_by_label("Username").fill("ada")
            page.get_by_label("Password").fill("ada-password-1")
            page.get_by_role("button", name="Log in").click()
            page.goto(f"{live_server.url}/endpoints/iris-prod/")
            page.locator("#logs").get_by_label("Level").select_option("WARNING")
            page.locator("#logs").get_by_role("button", name="Filter").click()
            expect(page.get_by_role("heading", name="Log")).to_be_visible()
            deadline = time.monotonic() + 15
            while not page.get_by_text("401 POST /predict").count() and time.monotonic() < deadline:
                time.sleep(0.3)
                page.reload()
            expect(page.get_by_text("401 POST /predict")).to_be_visible()
            expect(page.get_by_text("Serving iris")).to_have_count(0)  # INFO is below the level
        finally:
            browser.close()
    assert Deployment.objects.filter(status=DeploymentStatus.READY).count() == 1
