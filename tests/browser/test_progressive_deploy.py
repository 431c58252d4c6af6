"""A progressive deploy from the dashboard, in headless Chromium: the deploy form's Progressive
option and its settings, then the deployment page following the rollout until it rolls back by
itself, readable at 390 pixels, with no serious axe-core finding. Run with `scripts/test tests/browser`.

The memory runtime serves (nothing runs); the rollout's checks are run by the engine itself, in a
thread of their own (the browser's event loop holds this one), as beat's task would run them.
"""

import threading
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.test_golden_path import browser_page, log_in  # noqa: F401 (a fixture)
from tests.browser.test_traffic_charts import serious_violations

pytestmark = pytest.mark.browser


def in_a_thread(call, *args, **kwargs):
    """Run `call` where the ORM may be used (not the Playwright thread) and return its result."""
    from django.db import connections

    result = {}

    def run():
        try:
            result["value"] = call(*args, **kwargs)
        finally:
            connections.close_all()  # the test database is dropped at the end: leave no session

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result.get("value")


@pytest.fixture
def live(admin, endpoint, iris_version, memory_runtime):
    from endpoints.services.deployments import deployment_request
    from endpoints.services.operations import deployment_run

    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deployment_run(deployment_id=deployment.pk)
    return deployment


def run_deployment(deployment_id: int) -> None:
    from endpoints.services.operations import deployment_run

    deployment_run(deployment_id=deployment_id)


def fail_it(deployment_id: int, runtime) -> str:
    """Half of the new revision's requests answered 5xx in the last minute, then beat's check."""
    from endpoints.models import Deployment
    from endpoints.services.rollouts import rollout_check
    from worker.runtimes.traffic import TrafficPoint

    deployment = Deployment.objects.get(pk=deployment_id)
    now = timezone.now()
    runtime.report_traffic(
        deployment.endpoint.name,
        deployment.resources["revision"],
        [TrafficPoint(now - timedelta(seconds=20), ok=40, server_errors=40, p99=0.01)],
    )
    return rollout_check(deployment_id=deployment_id, now=now)


def test_an_admin_deploys_progressively_and_watches_it_roll_back(
    live_server,
    live,
    memory_runtime,
    browser_page,  # noqa: F811
):
    page = browser_page
    page.on("dialog", lambda dialog: dialog.accept())  # the deploy asks for confirmation
    log_in(page, live_server.url, "ada", "ada-password-1")
    page.goto(f"{live_server.url}/endpoints/iris-prod/")

    deploy = page.locator("#deploy")
    deploy.get_by_label("Progressive").check()
    deploy.get_by_text("Rollout settings").click()
    expect(deploy.get_by_label("Steps (%)")).to_have_attribute("placeholder", "10,50,100")
    deploy.get_by_label("Steps (%)").fill("20, 60, 100")
    deploy.get_by_label("Requests to judge").fill("30")
    deploy.get_by_role("button", name="Deploy").click()

    rollout = page.locator("section.rollout")
    expect(rollout).to_contain_text("Waiting for the deploy")
    expect(rollout).to_contain_text("It starts at 20%")
    deployment_id = int(page.url.rstrip("/").rsplit("/", 1)[1])

    in_a_thread(run_deployment, deployment_id)
    page.reload()
    expect(rollout).to_contain_text("Advancing")
    expect(rollout.locator(".rollout-current")).to_have_text("20% (current)")
    expect(rollout.locator(".rollout-next")).to_have_count(2)
    expect(rollout).to_contain_text("judged from 30 requests")
    assert serious_violations(page, "section.rollout") == []

    assert in_a_thread(fail_it, deployment_id, memory_runtime).startswith("rolled back at 20%")
    # The card refreshes itself while the rollout advances: no reload.
    expect(rollout).to_contain_text("Rolled back", timeout=15_000)
    expect(rollout.get_by_role("link", name=f"deployment #{live.pk}")).to_be_visible()
    expect(rollout.locator(".alert-error")).to_contain_text(
        "5xx on 50.0% of 80 requests over the last 5 minutes"
    )
    expect(rollout.locator(".rollout-failed")).to_have_text("20% (failed)")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(rollout).to_be_visible()
    expect(page.locator(".steps")).to_contain_text("Rolled back by itself")
    assert serious_violations(page, "main") == []
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} pixels wide at 390"
