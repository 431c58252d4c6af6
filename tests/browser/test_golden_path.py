"""The golden path, clicked through the real dashboard in headless Chromium.

An admin deploys the iris model and watches the steps arrive live; a team member asks for a key;
the admin approves it; the member sees the key once; the key gets a prediction from the endpoint.
Everything runs for real: the portal (pytest-django's live server), a Celery worker, PostgreSQL,
Redis and the local runtime's serving processes. A second test clicks the inline (htmx) edits:
the allowlist and revoking a key; another stops, starts and deletes an endpoint. Run with
`scripts/test tests/browser`.
"""

import re
import time

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from endpoints.demo import IRIS_FEATURES

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SETOSA = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))
SLOW = 120_000  # ms: a deploy starts a serving process on a machine shared with other tests


@pytest.fixture
def browser_page(tmp_path):
    """Headless Chromium. Ask for it after the fixtures that write the database: while Playwright's
    sync API runs, its event loop makes Django refuse ORM calls in this thread.

    Every page runs under the portal's Content-Security-Policy: anything it blocks (an inline
    script or style, an eval) fails the test, since it means a part of the page does not work.
    """
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        blocked: list[str] = []
        page.on(
            "console",
            lambda message: (
                blocked.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        try:
            yield page
        finally:
            page.screenshot(path=str(tmp_path / "last-page.png"), full_page=True)
            browser.close()
        assert not blocked, f"the Content-Security-Policy blocked: {blocked}"


def log_in(page: Page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def predict_until_accepted(url: str, key: str, timeout: float = 30.0) -> httpx.Response:
    """The key reaches the serving process's access file shortly after it is issued: retry until then."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.post(f"{url}/predict", json=SETOSA, headers={"x-api-key": key}, timeout=10)
        if response.status_code != 401 or time.monotonic() > deadline:
            return response
        time.sleep(0.25)


@pytest.mark.integration
def test_an_admin_deploys_and_a_team_member_gets_a_key_that_predicts(
    celery_worker_process, live_server, admin, member, endpoint, iris_version, tmp_path, browser_page
):
    try:
        golden_path(browser_page, live_server.url, tmp_path)
    except AssertionError as exc:
        # A timeout here is most often the worker's story: tell it (the page is in last-page.png).
        log = celery_worker_process.log_text()[-6000:]
        raise AssertionError(f"{exc}\n--- the Celery worker's log, last lines ---\n{log}") from exc


def golden_path(page: Page, base: str, tmp_path) -> None:
    # The admin deploys iris and watches the steps arrive without reloading the page.
    log_in(page, base, "ada", "ada-password-1")
    page.get_by_role("link", name="iris-prod").click()
    expect(page.get_by_role("heading", name=re.compile("iris-prod"))).to_be_visible()
    choice = page.get_by_label("Model version").locator("option", has_text="iris v1").inner_text()
    page.get_by_label("Model version").select_option(label=choice)
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"Deployment #\d+"))).to_be_visible()
    assert asked == [
        "Deploy iris v1 to iris-prod? It becomes the version that answers every call, "
        "on a URL the deploy makes."
    ]
    page.evaluate("window.notReloaded = true")
    expect(page.locator(".step").first).to_be_visible(timeout=SLOW)
    expect(page.locator(".steps-panel")).to_have_attribute("data-status", "ready", timeout=SLOW)
    assert page.evaluate("window.notReloaded") is True, "the steps should arrive without a reload"
    expect(page.locator(".step-done")).to_have_count(page.locator(".step").count())
    url = page.locator(".live-url").inner_text().strip()
    assert url.startswith("http://")
    page.screenshot(path=str(tmp_path / "deployment.png"), full_page=True)

    page.get_by_role("link", name="iris-prod").first.click()
    expect(page.locator("#calling")).to_contain_text(url)
    expect(page.locator("#history")).to_contain_text("Ready")
    page.screenshot(path=str(tmp_path / "endpoint.png"), full_page=True)
    log_out(page)

    # The team member asks for a key.
    log_in(page, base, "tom", "tom-password-1")
    page.get_by_role("link", name="iris-prod").click()
    page.get_by_role(
        "link", name="Request a key"
    ).first.click()  # the page head's; the playground has one too
    page.get_by_label("Reason").fill("Scoring flowers for the nightly report")
    page.get_by_label("Valid for (days)").fill("30")
    page.get_by_role("button", name="Send request").click()
    expect(page.locator("#key-request-status")).to_contain_text("Waiting for an admin")
    request_url = page.url
    log_out(page)

    # The admin approves it.
    log_in(page, base, "ada", "ada-password-1")
    page.get_by_role("link", name=re.compile("Key requests")).click()
    pending = page.locator("#pending tbody tr").filter(has_text="Scoring flowers")
    pending.get_by_placeholder("Note (optional)").fill("Fine for the nightly report")
    pending.get_by_role("button", name="Approve").click()
    expect(page.locator(".message.success")).to_contain_text("approved")
    log_out(page)

    # The member sees the key once, when the worker has issued it.
    log_in(page, base, "tom", "tom-password-1")
    page.goto(request_url)
    expect(page.get_by_role("button", name="Reveal key")).to_be_visible(timeout=SLOW)
    page.get_by_role("button", name="Reveal key").click()
    secret = page.locator("#api-key-secret").input_value()
    assert secret.startswith("mep_")
    expect(page.locator(".secret-box")).to_contain_text("only time it is shown")
    page.screenshot(path=str(tmp_path / "key-revealed.png"), full_page=True)
    page.goto(request_url)
    expect(page.locator("#key-request-status")).to_contain_text("cannot be shown again")
    assert secret not in page.content()

    # The key gets a prediction from the endpoint; no key gets a 401.
    response = predict_until_accepted(url, secret)
    assert response.status_code == 200, response.text
    assert response.json()["target"] == "setosa"
    assert httpx.post(f"{url}/predict", json=SETOSA, timeout=10).status_code == 401


@pytest.fixture
def issued_key(transactional_db, admin, member, team, endpoint):
    from endpoints.services.keys import key_request_approve, key_request_create, key_request_issue

    key_request = key_request_create(user=member, team=team, endpoint=endpoint, reason="Batch scoring jobs")
    key_request_approve(user=admin, request=key_request)
    return key_request_issue(request_id=key_request.pk)


def test_an_admin_edits_the_allowlist_and_revokes_a_key_without_reloading(
    live_server, endpoint, issued_key, browser_page
):
    page, base = browser_page, live_server.url
    page.on("dialog", lambda dialog: dialog.accept())  # the "Remove …?" and "Revoke …?" confirmations
    log_in(page, base, "ada", "ada-password-1")
    page.goto(f"{base}/endpoints/{endpoint.name}/")
    page.evaluate("window.notReloaded = true")
    allowlist = page.locator("#allowlist")

    allowlist.get_by_label("Address or range").fill("10.0.0.7/24")
    allowlist.get_by_role("button", name="Add").click()
    expect(allowlist.locator(".error")).to_contain_text("did you mean 10.0.0.0/24?")
    allowlist.get_by_label("Address or range").fill("203.0.113.0/24")
    allowlist.get_by_label("Note").fill("Partner office")
    allowlist.get_by_role("button", name="Add").click()
    expect(allowlist.locator("tbody")).to_contain_text("Partner office")
    allowlist.locator("tr", has_text="203.0.113.0/24").get_by_role("button", name="Remove").click()
    expect(allowlist.locator("tbody tr")).to_have_count(0)

    keys = page.locator("#keys")
    keys.get_by_role("button", name="Revoke").click()
    expect(keys.locator(".badge-revoked")).to_be_visible()
    expect(keys.get_by_role("button", name="Revoke")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True


def test_swagger_ui_and_the_django_admin_work_under_the_content_security_policy(
    live_server, admin, browser_page
):
    page, base = browser_page, live_server.url
    response = page.goto(f"{base}/api/docs/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Model endpoint portal API")
    expect(page.locator(".opblock-tag", has_text="keys")).to_be_visible()
    page.locator(".opblock-summary", has_text="/api/v1/key-requests/{id}/reveal/").first.click()
    expect(page.get_by_text("Show the issued key, once").first).to_be_visible()

    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("ada-password-1")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name=re.compile("administration|Site administration"))).to_be_visible()


@pytest.fixture
def guarded(transactional_db, admin):
    """An endpoint that checks addresses, with one entry on its allowlist."""
    from endpoints.services.allowlist import allowlist_add
    from endpoints.services.endpoints import endpoint_create

    endpoint = endpoint_create(user=admin, name="guarded", access_mode="ip_allowlist")
    allowlist_add(user=admin, endpoint=endpoint, cidr="203.0.113.0/24", note="Partner office")
    return endpoint


def test_emptying_an_allowlist_is_confirmed_in_the_page_and_then_said_plainly(
    live_server, guarded, browser_page
):
    page, base = browser_page, live_server.url
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(page, base, "ada", "ada-password-1")
    page.goto(f"{base}/endpoints/{guarded.name}/")
    page.evaluate("window.notReloaded = true")
    allowlist = page.locator("#allowlist")
    expect(page.locator("#access-state")).to_contain_text("applied")

    allowlist.locator("tr", has_text="203.0.113.0/24").get_by_role("button", name="Remove").click()
    box = allowlist.get_by_role("alertdialog")
    expect(box).to_contain_text("203.0.113.0/24 is the last entry")
    expect(box).to_contain_text("guarded then refuses every caller")
    expect(allowlist.locator("tbody tr")).to_have_count(1)  # nothing removed yet

    box.get_by_role("button", name="Remove it and refuse every caller").click()
    expect(allowlist.locator("tbody tr")).to_have_count(0)
    expect(allowlist).to_contain_text("this endpoint refuses every caller until an address is added")
    expect(page.locator("#access-state")).to_contain_text("pending")
    assert dialogs == []  # the page asked, not a script dialog
    assert page.evaluate("window.notReloaded") is True


@pytest.fixture
def served(transactional_db, admin, endpoint, iris_version, celery_worker_process):
    """iris-prod live, deployed by the worker before the browser opens."""
    from endpoints.models import Deployment
    from endpoints.services.deployments import deployment_request

    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deadline = time.monotonic() + SLOW / 1000
    while (status := Deployment.objects.get(pk=deployment.pk).status) in ("queued", "running"):
        assert time.monotonic() < deadline, celery_worker_process.log_text()[-4000:]
        time.sleep(0.2)
    assert status == "ready", celery_worker_process.log_text()[-4000:]
    endpoint.refresh_from_db()
    return endpoint.url


def test_an_admin_stops_starts_and_deletes_an_endpoint(live_server, served, browser_page):
    page, url = browser_page, served
    log_in(page, live_server.url, "ada", "ada-password-1")
    page.get_by_role("link", name="iris-prod").click()

    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"Stop #\d+"))).to_be_visible()
    expect(page.locator(".steps-panel")).to_have_attribute("data-status", "done", timeout=SLOW)
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{url}/predict", json=SETOSA, timeout=10)
    page.get_by_role("link", name="iris-prod").first.click()
    expect(page.locator("#calling")).to_contain_text("answers no prediction until the endpoint is started")

    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator(".steps-panel")).to_have_attribute("data-status", "done", timeout=SLOW)
    assert httpx.post(f"{url}/predict", json=SETOSA, timeout=10).status_code == 401  # serving, keys checked

    page.get_by_role("link", name="iris-prod").first.click()
    page.get_by_role("link", name="Delete endpoint…").click()
    expect(page.locator("table")).to_contain_text("stop iris-prod-d")  # the runtime's plan
    page.get_by_label("Type the endpoint's name to confirm").fill("iris")
    page.get_by_role("button", name="Delete iris-prod").click()
    expect(page.locator(".field .error")).to_contain_text("Type the endpoint's name, iris-prod, to confirm.")
    page.get_by_label("Type the endpoint's name to confirm").fill("iris-prod")
    page.get_by_role("button", name="Delete iris-prod").click()
    expect(page.locator(".steps-panel")).to_have_attribute("data-status", "done", timeout=SLOW)
    expect(page.locator(".steps-panel")).to_contain_text("its name is free")
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{url}/predict", json=SETOSA, timeout=10)
    page.get_by_role("link", name="Endpoints").first.click()
    expect(page.locator(".deleted-endpoints")).to_contain_text("iris-prod")
