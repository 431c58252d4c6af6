"""A live serving process is SIGKILLed: reconcile starts the live revision again on the same URL,
and only it."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.api import status_of
from tests.faults.checks import assert_only_live_serving, assert_stays_so, describe, serving
from tests.faults.conftest import LONG
from tests.faults.processes import signal_group
from tests.faults.stack import wait_for

pytestmark = pytest.mark.faults

CRITERION_SECONDS = 60
#: "master": its master only, as the OOM killer would (its workers must notice and leave);
#: "group": the master and its workers at once.
VICTIMS = ["master", "group"] if LONG else ["master"]


@pytest.mark.parametrize("victim", VICTIMS)
def test_a_killed_serving_process_is_started_again_on_its_url(stack, api, iris, victim):
    name = f"srv-kill-{victim}"
    api.create_endpoint(name)
    live = api.deploy_and_wait(name, iris[1]["id"], details=stack.logs_text)
    url = live["resources"]["url"]
    [process] = serving(stack, name)

    if victim == "master":
        os.kill(process.session, signal.SIGKILL)
    else:
        signal_group(process.session, signal.SIGKILL)
    killed_at = time.monotonic()
    # Reconcile may start it again before a poll sees it down: a new session counts as seen.
    wait_for(
        lambda: (
            status_of(url) != 200 or process.session not in {found.session for found in serving(stack, name)}
        ),
        10,
        f"{url} stops answering",
        lambda: describe(stack, name),
    )

    wait_for(
        lambda: status_of(url) == 200,
        CRITERION_SECONDS,
        f"{url} answers again",
        lambda: f"{describe(stack, name)}\n{stack.logs_text()}",
    )
    print(
        f"\nserving SIGKILLed, the endpoint answered again on {url} after {time.monotonic() - killed_at:.1f}s"
    )
    [revived] = serving(stack, name)
    assert revived.session != process.session
    assert_only_live_serving(stack, api, name, version=iris[1]["number"])
    assert api.endpoint(name)["service_url"] == url
    assert_stays_so(stack, api, name, version=iris[1]["number"], seconds=5)
