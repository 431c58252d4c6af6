"""The Cloud setup page in headless Chromium, against the fake Google servers: an admin finds it in
the navigation, copies a fix, sets the project up and checks again. Run with `scripts/test tests/browser`."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_golden_path import browser_page, log_in  # noqa: F401 (a fixture)
from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import BUCKET, PROJECT

pytestmark = pytest.mark.browser


def test_an_admin_copies_a_fix_then_checks_again_once_the_project_is_set_up(
    live_server,
    admin,
    gcp_settings,
    fakes,
    browser_page,  # noqa: F811
):
    page = browser_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    fakes.fresh()
    log_in(page, live_server.url, "ada", "ada-password-1")

    page.get_by_role("navigation").get_by_role("link", name="Cloud setup").click()

    expect(page.get_by_role("heading", name="Cloud setup", level=1)).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("checks fail")
    bucket = page.get_by_role("row", name=f"FAIL Artifact bucket gs://{BUCKET} does not exist")
    expect(bucket.locator("pre")).to_have_text(
        f"gcloud storage buckets create gs://{BUCKET} --project={PROJECT} --location=us-central1"
    )
    bucket.get_by_role("button", name="Copy").click()
    expect(bucket.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == bucket.locator("pre").inner_text()

    fakes.reset()  # the project as the fixes leave it
    page.get_by_role("button", name="Check again").click()

    expect(page.get_by_role("status")).to_have_text(
        re.compile(r"^Ready to deploy: all \d+ checks pass\.\s*$")
    )
    expect(page.get_by_role("row", name=f"PASS Artifact bucket gs://{BUCKET} exists")).to_be_visible()
