"""Two revisions on one port: the stable one forwards an exact share of requests to its canary.

Real `python -m serving` processes: the stable revision (version 3) holds the port; the canary
(version 4) takes its listener, is told to serve forwarded requests only, and the stable one is
told to send it a share over the canary's forward socket.
"""

import json
import re

import httpx
import orjson
import pytest

from serving.canary import takes
from serving.control import send_command
from serving.tests.support import SETOSA, Server, free_port, stop_all, versions_answering


def test_the_counter_gives_the_canary_exactly_its_share_after_any_number_of_requests():
    for percent in (1, 5, 10, 33, 50, 99, 100):
        taken = 0
        for n in range(1000):
            taken += takes(n, percent)
            assert taken == (n + 1) * percent // 100
    assert not any(takes(n, 0) for n in range(1000))


@pytest.fixture
def pair(iris_env, tmp_path):
    """(stable, canary, url): both serving one port, no share set yet."""
    port = free_port()
    stable_env = {**iris_env, "SERVING_CONTROL_SOCKET": str(tmp_path / "stable.sock")}
    meta = {**json.loads(iris_env["SERVING_MODEL_META"]), "version": 4}
    canary_env = {
        **iris_env,
        "SERVING_MODEL_META": orjson.dumps(meta).decode(),
        "SERVING_CONTROL_SOCKET": str(tmp_path / "canary.sock"),
        "SERVING_FORWARD_SOCKET": str(tmp_path / "canary.fwd.sock"),
        "SERVING_HANDOFF_FROM": str(tmp_path / "stable.sock"),
        "SERVING_REVISION": "iris-d2",
    }
    access = tmp_path / "access.json"
    access.write_text(json.dumps({"mode": "open", "keys": [], "cidrs": []}))
    stable_env["SERVING_ACCESS_FILE"] = canary_env["SERVING_ACCESS_FILE"] = str(access)
    stable = Server({**stable_env, "SERVING_REVISION": "iris-d1"}, tmp_path / "stable.log", port=port)
    stable.wait_ready()
    assert stable.command("serve") == {"ok": True, "serving": True}
    canary = Server(canary_env, tmp_path / "canary.log", port=port).wait_ready()
    try:
        assert send_command(canary.control, {"cmd": "serve_forwarded"}) == {"ok": True, "forwarded": True}
        yield stable, canary, f"http://127.0.0.1:{port}"
    finally:
        stop_all([stable, canary])


def predictions_counted(server: Server) -> float:
    """The `/v1/model` requests the process counted in its own metrics."""
    text = send_command(server.control, {"cmd": "metrics"})["metrics"]
    total = 0.0
    for line in text.splitlines():
        if line.startswith("serving_requests_total{") and 'route="/v1/model"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def set_share(stable: Server, canary: Server | None, percent: int) -> dict:
    command = {"cmd": "canary", "percent": percent}
    if canary is not None:
        command["to"] = str(canary.control).replace("canary.sock", "canary.fwd.sock")
    return send_command(stable.control, command)


def test_a_stable_revision_sends_its_canary_the_exact_share_asked_and_each_counts_its_own(pair):
    stable, canary, url = pair
    assert versions_answering(url, 20) == {3: 20}  # no share yet: the canary's workers do not accept

    answer = set_share(stable, canary, 10)
    assert answer["ok"] is True and answer["canary"]["percent"] == 10
    assert stable.command("status")["canary"]["percent"] == 10
    seen = versions_answering(url, 2000)
    # One worker, one counter: exactly 10 % (the "few percent" the portal promises, with none off).
    assert seen == {3: 1800, 4: 200}
    print(f"\nasked 10 %, the canary answered {seen[4] / 2000:.1%} of 2,000 requests")
    # Forwarded requests are the canary's alone: the stable process did not count them.
    assert predictions_counted(canary) == 200
    assert predictions_counted(stable) == 20 + 1800

    assert set_share(stable, canary, 50)["ok"] is True  # changed in place, no restart
    assert versions_answering(url, 400) == {3: 200, 4: 200}
    assert set_share(stable, None, 0) == {"ok": True, "canary": None}
    assert versions_answering(url, 100) == {3: 100}
    assert "canary" not in stable.command("status")


def test_a_forwarded_request_is_judged_by_the_callers_address_not_the_stable_process(pair, tmp_path):
    stable, canary, url = pair
    access = tmp_path / "access.json"
    access.write_text(json.dumps({"mode": "ip_allowlist", "keys": [], "cidrs": ["10.0.0.0/8"]}))
    for server in (stable, canary):
        assert server.command("reload_access")["ok"] is True
    assert set_share(stable, canary, 100)["ok"] is True
    # The canary answers every request; the caller (127.0.0.1) is not on the list, and a header
    # that claims another address is dropped by the stable process before forwarding.
    answer = httpx.post(f"{url}/predict", json=SETOSA, headers={"x-serving-client": "10.1.2.3"})
    assert answer.status_code == 403, answer.text
    assert canary.command("metrics")["metrics"].count('status="403"') >= 1
    access.write_text(json.dumps({"mode": "ip_allowlist", "keys": [], "cidrs": ["127.0.0.0/8"]}))
    for server in (stable, canary):
        assert server.command("reload_access")["ok"] is True
    assert httpx.post(f"{url}/predict", json=SETOSA).status_code == 200
    assert re.search(r"iris-d2", canary.output())  # the canary's log names its own revision


def test_a_canary_that_stops_costs_no_request_and_a_bad_share_is_refused(pair):
    stable, canary, url = pair
    assert set_share(stable, canary, 30)["ok"] is True
    assert versions_answering(url, 10)[4] == 3
    canary.terminate()
    assert versions_answering(url, 50) == {3: 50}  # the stable process answers what it cannot forward
    assert "did not answer" in stable.output()
    refused = set_share(stable, canary, 30)
    assert refused["ok"] is False and "forward socket" in refused["error"]
    assert send_command(stable.control, {"cmd": "canary", "percent": 150})["ok"] is False
    assert send_command(stable.control, {"cmd": "canary", "percent": 5})["ok"] is False  # no "to"


def test_calls_with_the_live_processes_portal_key_stay_with_it(pair, tmp_path):
    stable, canary, url = pair
    access = tmp_path / "access.json"
    access.write_text(json.dumps({"mode": "api_key", "keys": [], "cidrs": []}))
    for server in (stable, canary):
        assert server.command("reload_access")["ok"] is True
    key = stable.command("portal_key")["key"]
    assert set_share(stable, canary, 100)["ok"] is True
    # The playground's calls (the portal's key of the live process) are that process's to answer;
    # every other request goes to the canary, which refuses a key it does not know.
    answer = httpx.get(f"{url}/v1/model", headers={"x-api-key": key})
    assert (answer.status_code, answer.json()["version"]) == (200, 3)
    assert httpx.get(f"{url}/v1/model", headers={"x-api-key": "mep_unknown"}).status_code == 401
    assert canary.command("metrics")["metrics"].count('status="401"') >= 1
