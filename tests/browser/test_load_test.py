"""A load test from the endpoint page, in headless Chromium: an admin starts one with two users for
three seconds, the panel follows it without a reload until its figures and charts are there, and
axe-core finds no serious problem in it. A real Celery worker runs Locust against a real local
serving process on loopback. Run with `scripts/test tests/browser`."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_golden_path import browser_page, log_in  # noqa: F401 (a fixture)
from tests.browser.test_traffic_charts import serious_violations
from tests.integration.test_load_tests import serving  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SLOW = 120_000  # milliseconds: a bound on the worker's part, never a figure the test asserts


def test_an_admin_runs_a_load_test_from_the_endpoint_page(
    live_server,
    serving,  # noqa: F811
    celery_worker_process,
    browser_page,  # noqa: F811
    tmp_path,
):
    page = browser_page
    log_in(page, live_server.url, "ada", "ada-password-1")
    page.goto(f"{live_server.url}/endpoints/{serving.name}/")
    panel = page.locator("#load-tests")
    expect(panel.get_by_role("heading", name="Load test")).to_be_visible()

    panel.get_by_label("Users", exact=True).fill("0")
    panel.get_by_role("button", name="Start load test").click()
    expect(panel.get_by_text("Choose 1 to 50 users.")).to_be_visible()

    panel.get_by_label("Users", exact=True).fill("2")
    panel.get_by_label("Spawn rate (users per second)").fill("2")
    panel.get_by_label("Duration (seconds)").fill("3")
    page.evaluate("window.notReloaded = true")
    panel.get_by_role("button", name="Start load test").click()
    expect(page.locator("#load-tests")).to_have_attribute(
        "data-load-test-status", re.compile("queued|running")
    )
    try:
        expect(page.locator("#load-tests")).to_have_attribute("data-load-test-status", "done", timeout=SLOW)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{celery_worker_process.log_text()[-4000:]}") from exc
    assert page.evaluate("window.notReloaded") is True, "the figures should arrive without a reload"

    panel = page.locator("#load-tests")
    expect(panel.get_by_role("figure", name="Requests per second")).to_be_visible()
    expect(panel.get_by_role("figure", name="Latency percentiles")).to_be_visible()
    expect(panel.locator("path.line.series-ok")).to_have_count(1)
    summary = panel.get_by_role("table", name=re.compile("The whole test"))
    expect(summary).to_be_visible()
    assert int(summary.locator("tbody td").first.inner_text()) > 0
    expect(panel.get_by_role("link", name="Download its locustfile")).to_be_visible()
    expect(panel.get_by_role("button", name="Start load test")).to_be_enabled()
    assert serious_violations(page, "#load-tests") == []
    panel.screenshot(path=str(tmp_path / "load-test.png"))

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.locator("#load-tests").get_by_role("figure", name="Requests per second")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert serious_violations(page, "#load-tests") == []
