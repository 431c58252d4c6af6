"""The worker is SIGKILLed while it pushes a revoke to a serving process that is slow to answer
its control socket: the revoke, and the access changes after it, still take effect."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.api import status_of
from tests.faults.checks import endpoint_dir, serving
from tests.faults.stack import wait_for

pytestmark = pytest.mark.faults

CRITERION_SECONDS = 60


def test_access_changes_take_effect_after_a_worker_killed_while_applying_one(stack, api, records, iris):
    name = "access-kill"
    team = api.team_id()
    api.create_endpoint(name, access_mode="api_key")
    url = api.deploy_and_wait(name, iris[1]["id"], details=stack.logs_text)["resources"]["url"]
    revoked_request = api.request_key(name, team)
    api.approve(revoked_request)
    api.wait_issued(revoked_request, details=stack.logs_text)
    revoked_secret = api.reveal(revoked_request)
    wait_for(lambda: status_of(url, revoked_secret) == 200, 15, "the first key works")
    revoked_key = api.key_request(revoked_request)["api_key"]
    later_request = api.request_key(name, team)
    access_file = endpoint_dir(stack, name) / "access.json"
    [process] = serving(stack, name)

    os.kill(process.session, signal.SIGSTOP)  # its control socket takes the revoke but does not answer
    try:
        api.revoke(revoked_key)
        wait_for(lambda: '"revoked": true' in access_file.read_text(), 10, "the worker writes the revoke")
        stack.product.worker.kill()  # while it waits for the serving process's answer
    finally:
        os.kill(process.session, signal.SIGCONT)
    stack.product.worker.start()
    back_at = time.monotonic()
    api.approve(later_request)  # an access change made after the fault

    def converged() -> bool:
        policy = api.endpoint(name)["access_policy"]
        return (
            policy["state"] == "applied"
            and api.key_request(later_request)["status"] == "issued"
            and status_of(url, revoked_secret) in (401, 403)
            and not records.owed()
        )

    wait_for(
        converged,
        CRITERION_SECONDS,
        "the revoke and the key issued after it are in force",
        lambda: (
            f"access policy: {api.endpoint(name)['access_policy']}\n"
            f"later request: {api.key_request(later_request)['status']}\n"
            f"revoked key answers {status_of(url, revoked_secret)}\n"
            f"owed: {records.owed()}\n{stack.logs_text()}"
        ),
    )
    print(
        f"\nworker killed mid-apply: the access changes were in force {time.monotonic() - back_at:.1f}s after"
    )
    later_secret = api.reveal(later_request)
    wait_for(lambda: status_of(url, later_secret) == 200, 5, "the key issued after the fault works")
