"""Redis is wiped (FLUSHALL) while deploys and key changes are queued: every accepted change still
reaches its end, from the database's record of what is owed, with one serving process per endpoint."""

from __future__ import annotations

import time

import pytest

from tests.faults.api import status_of
from tests.faults.checks import assert_only_live_serving
from tests.faults.conftest import LONG
from tests.faults.stack import wait_for

pytestmark = pytest.mark.faults

CRITERION_SECONDS = 60
# The long run: 20 deploys (a redeploy and 19 first ones) and 10 key changes (9 approvals, a revoke).
FRESH_ENDPOINTS = 19 if LONG else 3
KEYS_TO_APPROVE = 9 if LONG else 2


@pytest.mark.parametrize("intervals", ["short", "defaults"], indirect=True)
def test_changes_in_flight_survive_a_broker_wipe(stack, api, records, iris, intervals):
    team = api.team_id()
    keyed = f"wipe-{intervals}-keys"
    api.create_endpoint(keyed, access_mode="api_key")
    api.deploy_and_wait(keyed, iris[1]["id"], details=stack.logs_text)
    url = api.endpoint(keyed)["service_url"]
    revoked_request = api.request_key(keyed, team)
    api.approve(revoked_request)
    api.wait_issued(revoked_request, details=stack.logs_text)
    revoked_secret = api.reveal(revoked_request)
    wait_for(lambda: status_of(url, revoked_secret) == 200, 15, "the key works")
    revoked_key = api.key_request(revoked_request)["api_key"]
    pending = [api.request_key(keyed, team) for _ in range(KEYS_TO_APPROVE)]
    fresh = [f"wipe-{intervals}-{index}" for index in range(FRESH_ENDPOINTS)]
    for name in fresh:
        api.create_endpoint(name)

    # In flight: a redeploy, first deploys, approvals and a revoke, all queued at once; then the wipe.
    deployments = {keyed: api.deploy(keyed, iris[2]["id"])}
    deployments.update({name: api.deploy(name, iris[1]["id"]) for name in fresh})
    for request_id in pending:
        api.approve(request_id)
    api.revoke(revoked_key)
    lost = stack.redis.flushall()
    wiped_at = time.monotonic()
    assert lost > 0, "nothing was queued when the broker was wiped: the scenario did not happen"

    def converged():
        return (
            all(api.deployment(deployment_id)["status"] == "ready" for deployment_id in deployments.values())
            and all(api.key_request(request_id)["status"] == "issued" for request_id in pending)
            and status_of(url, revoked_secret) in (401, 403)
            and not records.owed()
        )

    def state() -> str:
        return (
            f"deployments: { {name: api.deployment(pk)['status'] for name, pk in deployments.items()} }\n"
            f"key requests: {[api.key_request(pk)['status'] for pk in pending]}\n"
            f"revoked key answers {status_of(url, revoked_secret)}\n"
            f"owed: {records.owed()}\n{stack.logs_text()}"
        )

    wait_for(converged, CRITERION_SECONDS, "every change queued before the wipe took effect", state)
    took = time.monotonic() - wiped_at
    print(
        f"\n{intervals} intervals: {lost} task message(s) wiped; {len(deployments)} deploys, "
        f"{len(pending)} approvals and a revoke reached their end {took:.1f}s after the wipe"
    )

    secrets = [api.reveal(request_id) for request_id in pending]
    assert [status_of(url, secret) for secret in secrets] == [200] * len(secrets)
    assert_only_live_serving(stack, api, keyed, version=iris[2]["number"], key=secrets[0])
    for name in fresh:
        assert_only_live_serving(stack, api, name, version=iris[1]["number"])
