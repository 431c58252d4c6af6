"""The worker is SIGKILLed (its whole process group) just as a step of a redeploy begins or ends,
then started again: the deploy finishes exactly once, and leaves one serving process."""

from __future__ import annotations

import time

import pytest

from tests.faults.api import DEPLOY_STEPS, wait_journal
from tests.faults.checks import assert_only_live_serving, assert_stays_so
from tests.faults.conftest import LONG

pytestmark = pytest.mark.faults

#: (step, state, intervals): the worker is killed as soon as the journal shows the step in that
#: state ("running": it has begun; "done": it is over and the next one is under way), or past it
#: (the journal then, in the output, says where the kill landed). In the long
#: run: every step, both ways, and once on the product's default intervals (a 60 s claim).
CASES = [("start", "running", "short"), ("switch", "done", "short")]
if LONG:
    CASES = [
        (step, state, "short")
        for step in DEPLOY_STEPS
        for state in ("running", "done")
        if (step, state) != ("stop_previous", "done")  # the deploy is over then
    ] + [("start", "running", "defaults")]
CRITERION_SECONDS = 60
#: The last steps take milliseconds: a kill may land after the deploy finished. Then it is tried
#: again with another redeploy, at most this many times.
TRIES = 4
PATIENCE_SECONDS = 120  # how long to wait, to say by how much a late deploy missed the criterion


@pytest.mark.parametrize(("step", "state", "intervals"), CASES, indirect=["intervals"])
def test_a_deploy_whose_worker_was_killed_finishes_once(stack, api, records, iris, step, state, intervals):
    name = f"kill-{step.replace('_', '')}-{state[:4]}" + ("-dflt" if intervals == "defaults" else "")
    api.create_endpoint(name)
    api.deploy_and_wait(name, iris[1]["id"], details=stack.logs_text)
    for attempt in range(TRIES):
        version = iris[2] if attempt % 2 == 0 else iris[1]
        previous = api.deployment(api.endpoint(name)["live_deployment"]["id"])
        deployment_id = api.deploy(name, version["id"])
        wait_journal(records, deployment_id, step, state)
        stack.product.worker.kill()
        interrupted = api.deployment(deployment_id)
        if interrupted["status"] == "running":
            break
        stack.product.worker.start()  # too late: that deploy had finished; try the next one
    else:
        pytest.fail(f"no kill landed mid-deploy with {step} {state} in {TRIES} tries")
    assert interrupted["attempts"] == 1

    stack.product.worker.start()
    back_at = time.monotonic()
    done = api.wait_deployment(deployment_id, timeout=PATIENCE_SECONDS, details=stack.logs_text)
    took = time.monotonic() - back_at
    journaled = [f"{entry['step']} {entry['state']}" for entry in interrupted["steps"]]
    print(
        f"\n{intervals} intervals, worker killed with {step} {state} "
        f"(try {attempt + 1}, journal then: {journaled}); "
        f"ready {took:.1f}s after the worker was back"
    )

    assert done["attempts"] == 2, done
    assert [entry["step"] for entry in done["steps"]] == DEPLOY_STEPS, done["steps"]
    assert all(entry["state"] == "done" for entry in done["steps"]), done["steps"]
    assert done["resources"]["previous_revision"] == previous["resources"]["revision"]
    assert_only_live_serving(stack, api, name, version=version["number"])
    assert_stays_so(stack, api, name, version=version["number"], seconds=5)
    assert took <= CRITERION_SECONDS, (
        f"ready {took:.1f}s after the worker was back, not within {CRITERION_SECONDS}s "
        f"(DEPLOY_CLAIM_SECONDS {stack.product.env.get('DEPLOY_CLAIM_SECONDS', 'default')}); "
        f"journal: {done['steps']}\n{stack.logs_text()}"
    )
