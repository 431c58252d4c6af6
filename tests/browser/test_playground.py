"""The playground in headless Chromium, against a real local serving process: a team member with a
key changes the example row and sends it, sends a batch with another `return` choice, sees a 422
next to its field, and the panel reads well at 390 pixels with no serious axe-core finding.
Run with `scripts/test tests/browser`."""

import re

import pytest
from playwright.sync_api import expect

from endpoints.tests.test_playground import (  # noqa: F401 (fixtures)
    apply_access,
    module_runtime_dir,
    runtime_dir,
)
from tests.browser.test_golden_path import browser_page, log_in  # noqa: F401 (a fixture)
from tests.browser.test_traffic_charts import serious_violations

pytestmark = pytest.mark.browser


@pytest.fixture
def keyed_endpoint(transactional_db, runtime_dir, sent, admin, member, team, iris_bytes):  # noqa: F811
    """`iris-play` serving iris (with its examples) from a real process; the member's team holds a key."""
    from endpoints.demo import IRIS_EXAMPLES, IRIS_LABELS, NamedBytes
    from endpoints.services.deployments import deployment_request
    from endpoints.services.endpoints import endpoint_create
    from endpoints.services.keys import key_request_approve, key_request_create, key_request_issue
    from endpoints.services.operations import deployment_run
    from endpoints.services.versions import ml_model_create, model_version_register

    version = model_version_register(
        user=admin,
        ml_model=ml_model_create(user=admin, name="iris"),
        upload=NamedBytes(iris_bytes, "iris.skops"),
        label_map=IRIS_LABELS,
        example=IRIS_EXAMPLES,
    )
    endpoint = endpoint_create(user=admin, name="iris-play")
    assert deployment_run(
        deployment_id=deployment_request(user=admin, endpoint=endpoint, model_version=version).pk
    )
    request = key_request_create(
        user=member, team=team, endpoint=endpoint, reason="Scoring flowers in batches"
    )
    key_request_approve(user=admin, request=request)
    key_request_issue(request_id=request.pk)
    apply_access(endpoint)
    return endpoint


def test_a_key_holder_tries_rows_and_batches_in_the_playground(live_server, keyed_endpoint, browser_page):  # noqa: F811
    page = browser_page
    log_in(page, live_server.url, "tom", "tom-password-1")
    page.goto(f"{live_server.url}/endpoints/iris-play/")
    panel = page.locator("#playground")

    expect(panel.get_by_label("sepal_length")).to_have_value("5.1")  # the version's first example
    expect(panel.get_by_label("Rows of the batch, as a JSON list")).to_be_hidden()  # one row is chosen
    for name, value in {
        "sepal_length": "7",
        "sepal_width": "3.2",
        "petal_length": "4.7",
        "petal_width": "1.4",
    }.items():
        panel.get_by_label(name).fill(value)
    panel.get_by_role("button", name="Send").click()

    result = page.locator("#pg-result")
    expect(result.get_by_role("heading")).to_contain_text("HTTP 200")
    expect(result.get_by_role("heading")).to_have_text(re.compile(r"HTTP 200 [\d.]+ ms"))
    expect(result.locator("pre")).to_contain_text('"target": "versicolor"')
    expect(page.locator("#pg-curl")).to_contain_text('"petal_length": 4.7')  # the call just sent
    expect(page.locator("#pg-curl")).to_contain_text("$API_KEY")

    panel = page.locator("#playground")
    panel.get_by_role("radio", name="A batch").check()
    expect(panel.get_by_label("Rows of the batch, as a JSON list")).to_be_visible()
    expect(panel.get_by_label("sepal_length")).to_be_hidden()
    panel.get_by_label("Return").select_option("probabilities")
    panel.get_by_role("button", name="Send").click()
    expect(page.locator("#pg-result pre")).to_contain_text('"virginica": ')
    expect(page.locator("#pg-curl")).to_contain_text("?return=probabilities")
    expect(page.locator("#pg-curl")).to_contain_text('"inputs": [')

    panel = page.locator("#playground")
    panel.get_by_role("radio", name="One row").check()
    panel.get_by_label("petal_width").fill("")
    panel.get_by_role("button", name="Send").click()
    expect(page.locator("#pg-result").get_by_role("heading")).to_contain_text("HTTP 422")
    expect(page.locator("#pg-feature-3-error")).to_have_text("missing")
    assert serious_violations(page, "#playground") == []

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.locator("#playground").get_by_role("button", name="Send")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = page.locator("#playground").get_by_role("button", name="Send").bounding_box()
    assert box is not None and 0 <= box["x"] and box["x"] + box["width"] <= 390
    assert serious_violations(page, "#playground") == []


def test_the_playground_works_without_javascript(live_server, keyed_endpoint, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.browser.test_golden_path import CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_context(java_script_enabled=False).new_page()
        try:
            log_in(page, live_server.url, "tom", "tom-password-1")
            page.goto(f"{live_server.url}/endpoints/iris-play/")
            panel = page.locator("#playground")
            expect(panel.get_by_label("Rows of the batch, as a JSON list")).to_be_visible()  # both show
            panel.get_by_label("petal_length").fill("6")
            panel.get_by_label("petal_width").fill("2.5")
            panel.get_by_role("button", name="Send").click()

            expect(page).to_have_url(f"{live_server.url}/playground/")
            expect(page.get_by_role("heading", name="Playground", level=1)).to_be_visible()
            expect(page.locator("#pg-result pre")).to_contain_text('"target": "virginica"')
            expect(page.locator("#playground").get_by_label("petal_width")).to_have_value("2.5")
        finally:
            page.screenshot(path=str(tmp_path / "no-script.png"), full_page=True)
            browser.close()
