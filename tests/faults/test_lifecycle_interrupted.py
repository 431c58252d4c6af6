"""The worker is SIGKILLed in the middle of a stop or a delete, then started again: the operation
finishes exactly once, and leaves the endpoint as it says (stopped: no serving process, port kept;
deleted: no process, no files, the port free and the name usable again).

The kill lands deterministically while a step waits for the endpoint's runtime lock, which the
suite holds as a slow stop of another revision would; or, for the step boundary after the stop,
as soon as the journal shows the stop done (its later steps take a millisecond, so the kill may
land past them: then it is tried again on another endpoint).
"""

from __future__ import annotations

import time

import pytest

from tests.faults.api import DELETE_STEPS, STOP_STEPS, status_of, wait_journal
from tests.faults.checks import endpoint_dir, endpoint_port, serving
from tests.faults.processes import port_is_free
from tests.faults.stack import wait_for
from worker.runtimes.local.state import file_lock

pytestmark = pytest.mark.faults

CRITERION_SECONDS = 60
TRIES = 4
#: (operation, step, state, how): "lock": the step waits on the endpoint's lock, held by the suite;
#: "race": killed as soon as the journal shows the step in that state.
CASES = [
    ("stop", "stop", "running", "lock"),
    ("delete", "stop", "running", "lock"),
    ("delete", "stop", "done", "race"),
]


def endpoint_lock(stack, name: str):
    """Hold the local runtime's lock of the endpoint, as another of its operations would."""
    return file_lock(endpoint_dir(stack, name) / "lock")


@pytest.mark.parametrize(("operation", "step", "state", "how"), CASES)
def test_a_stop_or_delete_whose_worker_was_killed_finishes_once(
    stack, api, records, iris, operation, step, state, how
):
    steps = STOP_STEPS if operation == "stop" else DELETE_STEPS
    for attempt in range(TRIES):
        name = f"kill-{operation}-{step}-{state[:4]}-{attempt}"
        api.create_endpoint(name)
        api.deploy_and_wait(name, iris[1]["id"], details=stack.logs_text)
        url, port = api.endpoint(name)["service_url"], endpoint_port(stack, name)
        assert status_of(url) == 200
        if how == "lock":
            with endpoint_lock(stack, name):
                operation_id = getattr(api, operation)(name)
                wait_journal(records, operation_id, step, state, steps=steps)
                time.sleep(0.2)  # the step is now waiting on the lock
                stack.product.worker.kill()
        else:
            operation_id = getattr(api, operation)(name)
            wait_journal(records, operation_id, step, state, steps=steps)
            stack.product.worker.kill()
        interrupted = api.deployment(operation_id)
        if interrupted["status"] == "running":
            break
        stack.product.worker.start()  # too late: it had finished; try again on another endpoint
    else:
        pytest.fail(f"no kill landed mid-{operation} with {step} {state} in {TRIES} tries")
    assert interrupted["attempts"] == 1

    stack.product.worker.start()
    back_at = time.monotonic()
    done = api.wait_deployment(operation_id, timeout=CRITERION_SECONDS, details=stack.logs_text)
    took = time.monotonic() - back_at
    journaled = [f"{entry['step']} {entry['state']}" for entry in interrupted["steps"]]
    print(
        f"\nworker killed in a {operation} with {step} {state} (try {attempt + 1}, journal then: "
        f"{journaled}); done {took:.1f}s after the worker was back"
    )

    assert done["status"] == "done" and done["attempts"] == 2, done
    assert [entry["step"] for entry in done["steps"]] == steps, done["steps"]
    assert serving(stack, name) == []
    assert status_of(url) == "ConnectError"
    if operation == "stop":
        assert api.endpoint(name)["serving_state"] == "stopped"
        assert endpoint_port(stack, name) == port  # kept for the start
        started = api.wait_deployment(api.start(name), details=stack.logs_text)
        assert started["status"] == "done" and status_of(url) == 200
    else:
        assert api.request("GET", f"/api/v1/endpoints/{name}/").status_code == 404
        assert not endpoint_dir(stack, name).exists()
        wait_for(lambda: port_is_free(port), 10, f"port {port} free")
        api.create_endpoint(name)  # the name is free again
    time.sleep(2)  # reconcile runs meanwhile: nothing comes back
    assert len(serving(stack, name)) == (1 if operation == "stop" else 0)
