"""On the gcp runtime (the product's processes pointed at the fake Google servers, which speak the
real wire protocols on loopback), the worker is SIGKILLed in the middle of a deploy, a stop and a
delete, while Google holds its calls, then started again: each operation finishes exactly once, and
Google ends up holding what the operation says (one revision taking all traffic; a service scaled to
no instance; nothing at all).

The kill lands inside the named step: the fakes hold every call as soon as the journal shows the
step running, so the worker is killed with a call in flight, which Google then carries out without
anyone to hear the answer, as it would.
"""

from __future__ import annotations

import time

import pytest
from google.cloud import run_v2

from tests.fakes.fixtures import PROJECT, fake_servers, settings_values  # noqa: F401 (a fixture)
from tests.faults.api import wait_journal
from tests.faults.conftest import LONG

pytestmark = pytest.mark.faults

CRITERION_SECONDS = 60
#: (operation, step): the worker is killed while that step of the operation runs.
CASES = [("deploy", "revision"), ("stop", "stop_service"), ("delete", "delete_service")]
if LONG:
    CASES += [
        ("deploy", "service_account"),
        ("deploy", "artifact"),
        ("deploy", "revision_ready"),
        ("start", "start_service"),
        ("delete", "delete_service_account"),
        ("delete", "delete_artifacts"),
    ]
#: The gcp runtime's settings for the product's processes, on the suite's short waits.
WAITS = {
    "GCP_POLL_INTERVAL_SECONDS": "0.2",
    "GCP_OPERATION_WAIT_SECONDS": "2",
    "GCP_RETRY_INITIAL_SECONDS": "0.2",
    "GCP_CALL_TIMEOUT_SECONDS": "30",
}


@pytest.fixture(scope="module")
def on_gcp(stack, fake_servers):  # noqa: F811
    """The product's web, worker and beat on RUNTIME=gcp for this module, then back on local."""
    values = {key: str(value) for key, value in settings_values(fake_servers).items()}
    values.update(WAITS, RUNTIME="gcp", NO_GCE_CHECK="true")
    stack.product.reconfigure(values)
    try:
        yield fake_servers
    finally:
        fake_servers.resume()
        stack.product.reconfigure({**dict.fromkeys(values), "RUNTIME": "local"})


@pytest.fixture
def google(on_gcp):
    on_gcp.reset()
    yield on_gcp
    on_gcp.resume()


@pytest.fixture(scope="module")
def version(api) -> dict:
    """A version only these endpoints deploy, so a delete removes its artifact from the bucket."""
    model = api.create_model("iris-gcp")
    return api.upload_iris(model["id"], c=0.25)


def service(google, name: str) -> run_v2.Service | None:
    full = f"projects/{PROJECT}/locations/us-central1/services/{name}"
    return google.run.services.get(full)


@pytest.mark.parametrize(("operation", "step"), CASES)
def test_a_gcp_operation_whose_worker_was_killed_finishes_once(
    stack, api, records, google, version, operation, step
):
    name = f"gcp-{operation}-{step.replace('_', '')}"[:40]
    api.create_endpoint(name)
    if operation != "deploy":
        api.deploy_and_wait(name, version["id"], details=stack.logs_text)
    if operation == "start":
        api.wait_deployment(api.stop(name), details=stack.logs_text)

    operation_id = api.deploy(name, version["id"]) if operation == "deploy" else getattr(api, operation)(name)
    wait_journal(records, operation_id, step, "running", steps=[step])
    google.pause()
    time.sleep(0.5)  # the step's call is now held by Google
    stack.product.worker.kill()
    interrupted = api.deployment(operation_id)
    google.resume()
    assert interrupted["status"] == "running", interrupted

    stack.product.worker.start()
    back_at = time.monotonic()
    done = api.wait_deployment(operation_id, timeout=CRITERION_SECONDS, details=stack.logs_text)
    took = time.monotonic() - back_at
    print(f"\ngcp: worker killed in {operation}'s {step}; finished {took:.1f}s after the worker was back")

    # Waiting on Google is a retry too, so attempts are not counted: what Google holds is.
    assert done["attempts"] > interrupted["attempts"], done
    assert all(entry["state"] == "done" for entry in done["steps"]), done["steps"]
    found = service(google, name)
    if operation in ("deploy", "start"):
        live = api.endpoint(name)["live_deployment"]
        revision = api.deployment(live["id"])["resources"]["revision"]
        assert found is not None
        assert {(s.revision, s.percent) for s in found.traffic_statuses} == {
            (revision.rsplit("/", 1)[-1], 100)
        }
        assert found.scaling.scaling_mode != run_v2.ServiceScaling.ScalingMode.MANUAL
    elif operation == "stop":
        assert found is not None and found.scaling.manual_instance_count == 0
        assert found.scaling.scaling_mode == run_v2.ServiceScaling.ScalingMode.MANUAL
    else:
        assert api.request("GET", f"/api/v1/endpoints/{name}/").status_code == 404
        assert google.held() == {}, google.held()
    assert took <= CRITERION_SECONDS
    if operation != "delete":  # leave nothing for the local runtime to find when the suite is back on it
        api.wait_deployment(api.delete(name), details=stack.logs_text)
        assert google.held() == {}, google.held()
