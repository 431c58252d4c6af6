"""PostgreSQL goes away in the middle of a redeploy and comes back: web answers 503 (JSON on the
API, a page on the dashboard; never a traceback) while it is away and 200 from the first requests
after (no pooled connection left dead), and the deploy still finishes, once."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.faults.api import dashboard_session, wait_journal
from tests.faults.checks import assert_only_live_serving, assert_stays_so
from tests.faults.conftest import LONG, PASSWORD, USERNAME
from tests.faults.stack import wait_for

pytestmark = pytest.mark.faults

CRITERION_SECONDS = 60
OUTAGE_SECONDS = 4
BACK_SECONDS = 10  # web answers again this soon after the database is back
AFTER_REQUESTS = 40  # more than web's workers x threads: every pooled connection is used


def assert_unavailable(response: httpx.Response, what: str, *, api: bool) -> None:
    context = f"{what} answered {response.status_code}: {response.text[:1000]}"
    assert response.status_code == 503, context
    assert "Traceback" not in response.text and "OperationalError" not in response.text, context
    assert response.headers.get("Retry-After"), context
    if api:
        assert response.json()["code"] == "unavailable", context


#: (step done when the database goes, how it goes): stopped and started with probes in between,
#: and in the long run also `pg_ctl restart` a step later.
CASES = [("access", "stop-start"), ("ready", "restart")] if LONG else [("access", "stop-start")]


@pytest.mark.parametrize(("after", "how"), CASES)
def test_a_database_restart_mid_deploy(stack, api, records, iris, after, how):
    name = f"pg-{how}"
    api.create_endpoint(name)
    api.deploy_and_wait(name, iris[1]["id"], details=stack.logs_text)
    with dashboard_session(stack.product.url, USERNAME, PASSWORD) as dashboard:
        assert dashboard.get("/").status_code == 200
        deployment_id = api.deploy(name, iris[2]["id"])
        wait_journal(records, deployment_id, after)
        records.close()
        if how == "restart":
            stack.postgres.restart()
        else:
            stack.postgres.stop()
            try:
                probe_while_away(api, dashboard, name, deployment_id, iris[1]["id"])
            finally:
                stack.postgres.start()
        back_at = time.monotonic()

        wait_for(
            lambda: api.request("GET", "/api/v1/endpoints/").status_code == 200,
            BACK_SECONDS,
            "the API answers 200 again",
            stack.logs_text,
        )
        answered_after = time.monotonic() - back_at
        statuses = fetch_in_parallel(api, stack.product.url, AFTER_REQUESTS)
        assert set(statuses) == {200}, f"after the database came back: {statuses}"
        assert dashboard.get("/").status_code == 200

    done = api.wait_deployment(deployment_id, timeout=CRITERION_SECONDS, details=stack.logs_text)
    print(
        f"\ndatabase {how} after {after!r}: API 200 {answered_after:.1f}s after it was back, "
        f"deploy ready {time.monotonic() - back_at:.1f}s after, in {done['attempts']} attempts"
    )
    assert [step["step"] for step in done["steps"]].count("start") == 1
    assert_only_live_serving(stack, api, name, version=iris[2]["number"])
    assert_stays_so(stack, api, name, version=iris[2]["number"], seconds=5)


def probe_while_away(api, dashboard, name: str, deployment_id: int, version_id: int) -> None:
    """While the database is away: reads and writes on the API, and a dashboard page, answer 503."""
    down_at = time.monotonic()
    assert_unavailable(api.request("GET", "/api/v1/endpoints/"), "the endpoint list", api=True)
    assert_unavailable(api.request("GET", f"/api/v1/deployments/{deployment_id}/"), "a deployment", api=True)
    deploy = api.request("POST", f"/api/v1/endpoints/{name}/deploy/", json={"model_version": version_id})
    assert_unavailable(deploy, "a deploy request", api=True)
    assert_unavailable(dashboard.get("/"), "the dashboard", api=False)
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))


def fetch_in_parallel(api, url: str, count: int) -> list[int | str]:
    """`count` API reads on fresh connections from 4 threads (so both web workers serve some)."""
    statuses: list[int | str] = []
    lock = threading.Lock()
    headers = {"Authorization": api.http.headers["Authorization"]}

    def fetch(share: int) -> None:
        for _ in range(share):
            try:
                status = httpx.get(f"{url}/api/v1/endpoints/", headers=headers, timeout=30).status_code
            except httpx.HTTPError as exc:
                status = repr(exc)
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=fetch, args=(count // 4,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses
