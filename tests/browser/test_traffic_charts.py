"""The traffic charts on the endpoint page, in headless Chromium: they load into the page, switch
window, read well at 390 pixels, and axe-core finds no serious or critical problem in them.
Run with `scripts/test tests/browser`."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from endpoints.tests.test_views_traffic import record
from tests.browser.test_golden_path import browser_page, log_in  # noqa: F401 (a fixture)

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def serious_violations(page, selector: str) -> list[str]:
    """What axe-core (from npm, injected into the page) finds serious or critical under `selector`."""
    if not AXE.exists():
        pytest.skip("axe-core is not installed: npm install axe-core")
    # Evaluated, not added as a <script>: the portal's Content-Security-Policy would block that.
    page.evaluate(AXE.read_text())
    result = page.evaluate(f"axe.run({selector!r}).then(r => r.violations)")
    return [
        f"{violation['id']}: {violation['help']} ({len(violation['nodes'])} nodes)"
        for violation in result
        if violation["impact"] in ("serious", "critical")
    ]


@pytest.fixture
def traffic(endpoint):
    """Forty minutes of two revisions' traffic (before the browser starts: see `browser_page`)."""
    record(40, revisions=("iris-prod-d1", "iris-prod-d2"))


def test_the_endpoint_page_charts_its_traffic_per_revision(live_server, member, traffic, browser_page):  # noqa: F811
    page = browser_page
    endpoint = "iris-prod"
    log_in(page, live_server.url, "tom", "tom-password-1")
    page.goto(f"{live_server.url}/endpoints/{endpoint}/")

    traffic = page.locator("#traffic")
    for title in ("Requests per second by status class", "Server error rate (5xx)", "Latency percentiles"):
        chart = traffic.get_by_role("figure", name=title)
        expect(chart).to_be_visible()
        expect(chart.get_by_role("img", name=title)).to_be_visible()
    expect(traffic.locator("path.line.series-ok")).to_have_count(2)  # one 2xx line per revision
    expect(traffic.get_by_role("listitem").filter(has_text="iris-prod-d2 p99")).to_be_visible()
    expect(traffic.get_by_role("row", name="iris-prod-d1 400")).to_be_visible()
    assert serious_violations(page, "#traffic") == []

    traffic.get_by_role("link", name="Last week").click()
    expect(traffic.get_by_role("link", name="Last week")).to_have_attribute("aria-current", "true")
    expect(traffic.get_by_text("Last week to")).to_be_visible()
    expect(traffic.get_by_role("figure", name="Latency percentiles")).to_be_visible()

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(traffic.get_by_role("figure", name="Requests per second by status class")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = traffic.get_by_role("img", name="Latency percentiles").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert serious_violations(page, "#traffic") == []

    # Without JavaScript's partial: the charts' own page, its step table opened.
    page.goto(f"{live_server.url}/endpoints/{endpoint}/traffic/?window=day")
    page.get_by_text("The charts' figures, last day, step by step").click()
    expect(
        page.get_by_role("region", name="The charts' figures step by step (scrolls sideways)")
    ).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert serious_violations(page, "main") == []
