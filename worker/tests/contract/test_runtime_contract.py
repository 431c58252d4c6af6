"""What every runtime promises the portal (worker/runtimes/base.py), checked on each of them.

Run for the local runtime (real serving processes), the GCP runtime (real Google clients on the
fake Google servers) and the kubernetes runtime (the official client on the fake API server), so
neither the fakes nor the runtimes drift from what the portal relies on.
"""

import dataclasses

import pytest

from worker.runtimes.base import (
    AccessPolicy,
    IdentityPolicy,
    KeyRecord,
    KeySpec,
    PermanentError,
    StepResult,
    TeardownSpec,
    plan_of,
)


def test_a_deploy_makes_the_specs_revision_live_at_a_url(harness):
    spec = harness.spec(1)
    steps = harness.runtime.deploy_steps(spec)
    names = [step.name for step in steps]
    assert len(names) == len(set(names)) and all(step.title for step in steps)

    resources = {}
    for step in steps:
        result = step.run(resources)
        assert isinstance(result, StepResult) and result.message
        resources.update(result.resources)

    assert resources["revision"] == spec.revision
    assert resources["url"].startswith(("http://", "https://"))
    assert harness.live_revision() == spec.revision


def test_running_each_step_twice_leaves_one_live_revision(harness):
    spec = harness.spec(1)
    resources = {}
    for step in harness.runtime.deploy_steps(spec):
        resources.update(step.run(resources).resources)
        resources.update(step.run(resources).resources)

    assert harness.live_revision() == spec.revision
    assert harness.running_revisions() == [spec.revision]


def test_a_deploy_resumed_by_another_worker_ends_as_if_it_had_run_once(harness):
    spec = harness.spec(1)
    steps = harness.runtime.deploy_steps(spec)
    half = len(steps) // 2
    resources = {}
    for step in steps[:half]:
        resources.update(step.run(resources).resources)

    # The worker dies; another process builds its own runtime and runs the remaining steps.
    other = harness.fresh_runtime()
    for step in other.deploy_steps(spec)[half:]:
        resources.update(step.run(resources).resources)

    assert harness.live_revision() == spec.revision
    assert harness.running_revisions() == [spec.revision]


def test_the_next_deploy_replaces_the_live_revision(harness):
    first = harness.deploy(harness.spec(1))

    second = harness.deploy(harness.spec(2, previous=first))

    assert harness.live_revision() == harness.spec(2).revision
    assert second["url"] == first["url"]


def test_a_damaged_artifact_fails_permanently_and_serves_nothing(harness):
    damaged = dataclasses.replace(harness.model, sha256="0" * 64)

    with pytest.raises(PermanentError, match="sha256 mismatch"):
        harness.deploy(harness.spec(1, model=damaged))
    assert harness.live_revision() is None


def test_issuing_the_same_key_twice_gives_the_same_key(harness):
    harness.deploy(harness.spec(1))
    spec = KeySpec(endpoint=harness.endpoint, key_id="r1", display_name="Team for contract (request 1)")

    first = harness.runtime.issue_key(spec)
    second = harness.runtime.issue_key(spec)

    assert first.name == second.name
    assert first.secret and second.secret


def test_a_revoked_key_stops_opening_the_endpoint_and_revoking_twice_is_fine(harness):
    from endpoints.sealing import key_hash

    harness.deploy(harness.spec(1))
    issued = harness.runtime.issue_key(
        KeySpec(endpoint=harness.endpoint, key_id="r2", display_name="Team for contract (request 2)")
    )
    record = KeyRecord(prefix=issued.secret[:12], key_hash=key_hash(issued.secret))
    harness.runtime.apply_access(harness.endpoint, AccessPolicy(mode="api_key", keys=(record,)))
    assert harness.key_opens(issued.secret)

    harness.runtime.revoke_key(harness.endpoint, issued.name)
    harness.runtime.revoke_key(harness.endpoint, issued.name)
    revoked = dataclasses.replace(record, revoked=True)
    harness.runtime.apply_access(harness.endpoint, AccessPolicy(mode="api_key", keys=(revoked,)))

    assert not harness.key_opens(issued.secret)


#: An identity policy whose keys are on loopback (nobody listens there: the keys cannot be had).
IDENTITY = IdentityPolicy(
    issuer="https://issuer.example.com",
    audience="https://contract.example.com",
    jwks_url="http://127.0.0.1:9/keys",
    invokers=("user:contract@example.com",),
)


@pytest.mark.parametrize("mode", ["api_key", "ip_allowlist", "both", "open", "identity"])
def test_applying_the_same_access_twice_is_harmless(harness, mode):
    identity = IDENTITY if mode == "identity" else None
    access = AccessPolicy(mode=mode, cidrs=("198.51.100.0/24", "203.0.113.7/32"), identity=identity)
    harness.deploy(harness.spec(1, access=access))

    harness.runtime.apply_access(harness.endpoint, access)
    harness.runtime.apply_access(harness.endpoint, access)

    assert harness.live_revision() == harness.spec(1).revision


def test_ensuring_a_serving_deployment_starts_nothing(harness):
    spec = harness.spec(1)
    harness.deploy(spec)

    assert harness.runtime.ensure_serving(spec) is False
    assert harness.running_revisions() == [spec.revision]


def test_a_stopped_endpoint_serves_nothing_and_starts_again_on_its_url(harness):
    spec = harness.spec(1)
    live = harness.deploy(spec)
    live_spec = dataclasses.replace(spec, previous=live)

    harness.run(harness.runtime.stop_steps(live_spec))
    harness.run(harness.runtime.stop_steps(live_spec))  # a stop run again is still a stop

    assert not harness.serves()

    harness.run(harness.runtime.start_steps(live_spec))

    assert harness.serves() and harness.live_revision() == spec.revision
    assert harness.running_revisions() == [spec.revision]


def test_a_delete_leaves_nothing_and_can_be_repeated_or_resumed(harness):
    spec = harness.spec(1)
    live = harness.deploy(spec)
    teardown = TeardownSpec(endpoint=harness.endpoint, made=(live,), artifacts=(spec.model,))
    steps = harness.runtime.delete_steps(teardown)
    names = [step.name for step in steps]
    assert len(names) == len(set(names)) and all(step.title for step in steps)
    assert harness.leftovers()

    # The worker dies half-way; another one runs every step again, then once more.
    harness.run(steps[: len(steps) // 2])
    harness.run(harness.fresh_runtime().delete_steps(teardown))
    harness.run(harness.fresh_runtime().delete_steps(teardown))

    assert harness.leftovers() == {}
    assert harness.live_revision() is None and not harness.serves()
    assert all(change.action == "none" for change in plan_of(harness.runtime.delete_steps(teardown)))


def test_the_live_revisions_log_is_read_newest_last_and_followed_from_its_cursor(harness):
    from worker.runtimes.logs import LEVELS, LogQuery, LogQueryError

    assert harness.runtime.read_log(harness.endpoint, None, LogQuery()).revision is None
    spec = harness.spec(1)
    resources = harness.deploy(spec)

    page = harness.runtime.read_log(harness.endpoint, resources, LogQuery())
    assert page.revision == spec.revision
    assert all(entry.level in LEVELS for entry in page.entries)
    times = [entry.time for entry in page.entries if entry.time]
    assert times == sorted(times)
    later = harness.runtime.read_log(harness.endpoint, resources, LogQuery(after=page.cursor))
    assert later.revision == spec.revision
    assert all(entry.time >= (times[-1] if times else "") for entry in later.entries)
    with pytest.raises(LogQueryError):
        harness.runtime.read_log(harness.endpoint, resources, LogQuery(after="not a cursor"))
