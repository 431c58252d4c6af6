"""Redis is shut down while an admin deploys, approves a key request, revokes a key, adds an
allowlist entry, changes an access mode, stops an endpoint and deletes another: each call is
answered as accepted, and once Redis is back every change reaches its end; the revoked key is
refused within 15 s of Redis's return."""

from __future__ import annotations

import time

import pytest

from tests.faults.api import served_version, status_of
from tests.faults.checks import assert_only_live_serving, endpoint_dir, serving
from tests.faults.stack import wait_for

pytestmark = pytest.mark.faults

CRITERION_SECONDS = 60
REVOKE_SECONDS = 15
OUTAGE_SECONDS = 5
ANSWER_SECONDS = 10  # an accepted change is answered promptly, broker or not
ACCESS_ROLES = ("keys", "allow", "mode", "deploy")  # the endpoints that still exist at the end


def test_changes_made_while_the_broker_is_down_all_take_effect(stack, api, records, iris):
    team = api.team_id()
    names = {
        "keys": "down-keys",
        "allow": "down-allow",
        "mode": "down-mode",
        "deploy": "down-deploy",
        "stop": "down-stop",
        "delete": "down-delete",
    }
    api.create_endpoint(names["keys"], access_mode="api_key")
    api.create_endpoint(names["allow"], access_mode="ip_allowlist")
    api.allow(names["allow"], "203.0.113.0/24")  # not this machine
    api.create_endpoint(names["mode"], access_mode="api_key")
    for role in ("deploy", "stop", "delete"):
        api.create_endpoint(names[role])
    before = [api.deploy(name, iris[1]["id"]) for name in names.values()]
    for deployment_id in before:
        api.wait_deployment(deployment_id, details=stack.logs_text)
    urls = {role: api.endpoint(name)["service_url"] for role, name in names.items()}
    revoked_request = api.request_key(names["keys"], team)
    api.approve(revoked_request)
    api.wait_issued(revoked_request, details=stack.logs_text)
    revoked_secret = api.reveal(revoked_request)
    wait_for(lambda: status_of(urls["keys"], revoked_secret) == 200, 15, "the first key works")
    revoked_key = api.key_request(revoked_request)["api_key"]
    approved_request = api.request_key(names["keys"], team)
    assert status_of(urls["allow"]) == 403 and status_of(urls["mode"]) == 401

    stack.redis.shutdown()
    down_at = time.monotonic()
    calls = {
        "deploy": lambda: api.deploy(names["deploy"], iris[2]["id"]),
        "approve": lambda: api.approve(approved_request),
        "revoke": lambda: api.revoke(revoked_key),
        "allowlist": lambda: api.allow(names["allow"], "127.0.0.1/32"),
        "access mode": lambda: api.set_access_mode(names["mode"], "open"),
        "stop": lambda: api.stop(names["stop"]),
        "delete": lambda: api.delete(names["delete"]),
    }
    answers, durations = {}, {}
    for what, call in calls.items():
        started = time.monotonic()
        answers[what] = call()  # raises, naming the call and its status, unless 200/201/202
        durations[what] = time.monotonic() - started
    slow = {what: round(seconds, 1) for what, seconds in durations.items() if seconds > ANSWER_SECONDS}
    assert not slow, f"calls answered slowly while the broker was down: {slow}"
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))

    stack.redis.start()
    back_at = time.monotonic()
    details = stack.logs_text

    wait_for(
        lambda: status_of(urls["keys"], revoked_secret) in (401, 403),
        REVOKE_SECONDS,
        "the key revoked while the broker was down is refused",
        lambda: (
            f"predict with it: {status_of(urls['keys'], revoked_secret)}\nowed: {records.owed()}\n{details()}"
        ),
    )
    refused_after = time.monotonic() - back_at

    def converged():
        return (
            api.deployment(answers["deploy"])["status"] == "ready"
            and api.key_request(approved_request)["status"] == "issued"
            and status_of(urls["allow"]) == 200
            and status_of(urls["mode"]) == 200
            and api.deployment(answers["stop"])["status"] == "done"
            and api.deployment(answers["delete"])["status"] == "done"
            and not records.owed()
        )

    def state() -> str:
        deployment = api.deployment(answers["deploy"])
        return (
            f"deploy: {deployment['status']} {deployment['error']}\n"
            f"approved request: {api.key_request(approved_request)['status']}\n"
            f"allowlisted caller: {status_of(urls['allow'])}, opened endpoint: {status_of(urls['mode'])}\n"
            f"stop: {api.deployment(answers['stop'])['status']}, "
            f"delete: {api.deployment(answers['delete'])['status']}\n"
            f"access: { {role: api.endpoint(names[role])['access_policy'] for role in ACCESS_ROLES} }\n"
            f"owed: {records.owed()}\n{details()}"
        )

    wait_for(converged, CRITERION_SECONDS, "every change made while the broker was down took effect", state)
    converged_after = time.monotonic() - back_at
    print(
        f"\nbroker down {OUTAGE_SECONDS}s; calls answered in "
        f"{ {what: round(seconds, 2) for what, seconds in durations.items()} }; revoked key refused "
        f"{refused_after:.1f}s and everything converged {converged_after:.1f}s after Redis was back"
    )

    new_secret = api.reveal(approved_request)
    assert status_of(urls["keys"], new_secret) == 200
    assert status_of(urls["keys"], revoked_secret) in (401, 403)
    for role in ACCESS_ROLES:
        assert api.endpoint(names[role])["access_policy"]["state"] == "applied", api.endpoint(names[role])
    assert status_of(urls["stop"]) == status_of(urls["delete"]) == "ConnectError"
    assert serving(stack, names["stop"]) == serving(stack, names["delete"]) == []
    assert api.endpoint(names["stop"])["serving_state"] == "stopped"
    assert not endpoint_dir(stack, names["delete"]).exists()
    assert served_version(urls["deploy"]) == iris[2]["number"]
    assert_only_live_serving(stack, api, names["deploy"], version=iris[2]["number"])
    assert_only_live_serving(stack, api, names["keys"], version=iris[1]["number"], key=new_secret)
