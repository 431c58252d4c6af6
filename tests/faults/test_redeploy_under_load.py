"""Redeploys under load: clients on kept-alive and fresh connections and wrk call the endpoint
through several redeploys; no request fails, and after each deploy only its version answers."""

from __future__ import annotations

import time

import pytest

from tests.faults.checks import assert_only_live_serving, assert_stays_so
from tests.faults.conftest import LONG
from tests.faults.load import Clients, Wrk

pytestmark = pytest.mark.faults

REDEPLOYS = 10 if LONG else 3


def test_redeploys_under_load_fail_no_request(stack, api, iris):
    name = "under-load"
    api.create_endpoint(name)
    api.deploy_and_wait(name, iris[1]["id"], details=stack.logs_text)
    url = api.endpoint(name)["service_url"]
    order = [iris[2], iris[1]] * REDEPLOYS

    late = {}
    with Clients(url) as clients, Wrk(url, stack.base) as wrk:
        clients.wait_for(50)
        for version in order[:REDEPLOYS]:
            done = api.deploy_and_wait(name, version["id"], details=stack.logs_text)
            ready_at = time.monotonic()
            seen = clients.versions_since(ready_at)
            if seen != {version["number"]}:
                late[done["id"]] = seen
    result = wrk.result
    assert result is not None

    print(
        f"\n{REDEPLOYS} redeploys under load: {clients.ok} client requests, {result.requests} wrk requests, "
        f"{len(clients.failures)} client failures, wrk errors {result.errors}, non-2xx {result.non_2xx}"
    )
    assert clients.failures == [], clients.failures[:10]
    assert result.requests > 0, result.output
    assert result.errors == {} and result.non_2xx == 0, result.output
    assert late == {}, f"versions answering after a deploy was ready (deployment id: versions): {late}"
    final = order[REDEPLOYS - 1]["number"]
    assert_only_live_serving(stack, api, name, version=final)
    assert_stays_so(stack, api, name, version=final, seconds=5)
