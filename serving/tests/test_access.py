"""API keys and the address allowlist, read from SERVING_ACCESS_FILE and re-read when it changes.

Most tests here are attacks: each must end in a 4xx with a reason, never a 500 and never a pass.
"""

import hashlib
import os
import socket
import time
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from serving import access as access_module
from serving.access import (
    ADDRESS_NOT_ALLOWED,
    EMPTY_ALLOWLIST,
    EXPIRED_KEY,
    MISSING_KEY,
    QUERY_KEY,
    REVOKED_KEY,
    UNKNOWN_KEY,
    AccessControl,
)
from serving.tests.support import SETOSA, Server

VALID = "k3y-valid-000-aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
REVOKED = "k3y-revoked-0-bbbbbbbbbbbbbbbbbbbbbbbbbbbb"
EXPIRED = "k3y-expired-0-cccccccccccccccccccccccccccc"
SAME_PREFIX = VALID[:12] + "-but-another-key"


def record(secret, expires_at=None, revoked=False):
    return {
        "prefix": secret[:12],
        "hash": hashlib.sha256(secret.encode()).hexdigest(),
        "expires_at": expires_at,
        "revoked": revoked,
    }


KEYS = [
    record(VALID, expires_at="2999-01-01T00:00:00Z"),
    record(REVOKED, revoked=True),
    record(EXPIRED, expires_at="2020-01-01T00:00:00+00:00"),
]


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def access_file(tmp_path_factory):
    return tmp_path_factory.mktemp("access") / "access.json"


def write_policy(path, mode, keys=(), cidrs=()) -> bool:
    """Replace the file atomically, as the portal does; False if it already says this."""
    content = orjson.dumps({"mode": mode, "keys": list(keys), "cidrs": list(cidrs)})
    if path.exists() and path.read_bytes() == content:
        return False
    staging = path.with_suffix(".tmp")
    staging.write_bytes(content)
    os.replace(staging, path)
    return True


@pytest.fixture(scope="module")
def server(iris_env, access_file):
    write_policy(access_file, "api_key", KEYS)
    host = "::" if ipv6_available() else "127.0.0.1"
    # Two workers and a control socket, as the portal runs it: `reload_access` must reach both.
    env = {
        **iris_env,
        "SERVING_ACCESS_FILE": str(access_file),
        "SERVING_WORKERS": "2",
        "SERVING_CONTROL_SOCKET": str(access_file.parent / "control.sock"),
    }
    running = Server(env, access_file.parent / "server.log", host=host).wait_ready()
    assert running.command("serve")["ok"]
    yield running
    running.terminate()


def apply(server, access_file, mode, keys=(), cidrs=()) -> dict:
    """Rewrite the access file and tell the server, as the portal's local runtime does."""
    write_policy(access_file, mode, keys, cidrs)
    answer = server.command("reload_access")
    assert answer["ok"], answer
    return answer


@pytest.fixture
def api_key_policy(access_file, server):
    """Each test starts from the key policy."""
    apply(server, access_file, "api_key", KEYS)


def wait_for(url, status, headers=None, timeout=5.0):
    """Poll /predict until it answers `status` (the file is looked at every half second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = httpx.post(f"{url}/predict", json=SETOSA, headers=headers or {})
        if answer.status_code == status:
            return answer
        time.sleep(0.05)
    raise AssertionError(f"never saw {status}; last {answer.status_code} {answer.text}")


def call(server, key=None, path="/predict", params=None, headers=None):
    headers = {**({"x-api-key": key} if key else {}), **(headers or {})}
    if path == "/predict":
        return httpx.post(f"{server.url}{path}", json=SETOSA, headers=headers, params=params)
    return httpx.get(f"{server.url}{path}", headers=headers, params=params)


def calls(server, count=8, **options):
    """`count` calls, each on a new connection, so both workers answer some."""
    return [call(server, headers={"connection": "close"}, **options) for _ in range(count)]


def raw_exchange(server, request: bytes) -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(request)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    return reply


def test_a_valid_key_in_the_header_passes(server, api_key_policy):
    assert call(server, VALID).json()["target"] == "setosa"
    assert call(server, VALID, path="/v1/model").status_code == 200


def test_a_missing_key_is_a_401(server, api_key_policy):
    response = call(server)
    assert response.status_code == 401
    assert "x-api-key" in response.json()["error"]
    assert call(server, path="/v1/model").status_code == 401


def test_an_unknown_key_is_a_401_even_with_a_known_prefix(server, api_key_policy):
    assert call(server, "nothing-like-a-key").status_code == 401
    assert call(server, SAME_PREFIX).status_code == 401


def test_a_revoked_key_is_a_403(server, api_key_policy):
    response = call(server, REVOKED)
    assert (response.status_code, response.json()) == (403, {"error": "API key revoked"})


def test_an_expired_key_is_a_403(server, api_key_policy):
    response = call(server, EXPIRED)
    assert (response.status_code, response.json()) == (403, {"error": "API key expired"})


@pytest.mark.parametrize("name", ["key", "api_key", "apikey", "x-api-key"])
def test_a_key_in_the_query_string_is_refused(server, api_key_policy, name):
    response = call(server, VALID, params={name: VALID})
    assert response.status_code == 401
    assert "send the key in the x-api-key header" in response.json()["error"]
    assert "query string" in response.json()["error"]


def test_health_checks_need_no_key(server, api_key_policy):
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/v2/models/iris/ready"):
        assert call(server, path=path).status_code == 200, path


@pytest.mark.parametrize(
    "path", ["/", "/metrics", "/openapi.json", "/docs", "/v2/models/other", "/v2/models/other/ready"]
)
def test_routes_that_describe_the_model_or_its_traffic_refuse_a_caller_without_a_key(
    server, api_key_policy, path
):
    response = call(server, path=path)
    assert response.status_code == 401
    assert "x-api-key" in response.json()["error"]
    assert "iris" not in response.text
    assert call(server, "nothing-like-a-key", path=path).status_code == 401
    assert call(server, VALID, path=path).status_code in (200, 404)


def test_metrics_refuse_an_address_outside_the_allowlist(server, access_file, api_key_policy):
    apply(server, access_file, "ip_allowlist", cidrs=["192.0.2.0/24"])
    for path in ("/metrics", "/openapi.json", "/docs"):
        assert call(server, path=path).status_code == 403, path
    assert call(server, path="/healthz").status_code == 200


def test_the_control_socket_gives_the_metrics_the_http_route_refuses(server, api_key_policy):
    call(server, VALID)
    text = server.command("metrics")["metrics"]
    assert 'serving_requests_total{model="iris",model_version="3",route="/predict",status="200"}' in text
    assert call(server, path="/metrics").status_code == 401


def test_an_oversize_header_section_is_a_431(server, api_key_policy):
    response = call(server, VALID, headers={"x-padding": "a" * 20_000})
    assert response.status_code == 431
    assert "16384 bytes" in response.json()["error"]
    # Many small headers add up the same way.
    many = {f"x-pad-{index}": "b" * 100 for index in range(200)}
    assert call(server, VALID, headers=many).status_code == 431
    assert call(server, VALID, path="/healthz", headers=many).status_code == 431
    assert call(server, VALID).status_code == 200


def test_a_header_section_that_never_ends_is_cut_off_with_a_431(server, api_key_policy):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nx-padding: ")
        reply = b""
        try:
            for _ in range(64):  # 4 MiB, sent in pieces, never finished
                conn.sendall(b"c" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection: what it said is still to be read
        try:
            while chunk := conn.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    assert call(server, path="/healthz").status_code == 200


def test_a_request_with_two_key_headers_is_a_400(server, api_key_policy):
    for second in (VALID, "nothing-like-a-key", ""):
        reply = raw_exchange(
            server,
            b"GET /v1/model HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\nX-Api-Key: %s\r\n"
            b"connection: close\r\n\r\n" % (VALID.encode(), second.encode()),
        )
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
        assert b"one x-api-key header" in reply
    body = orjson.dumps(SETOSA)
    reply = raw_exchange(
        server,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nx-api-key: a\r\nx-api-key: %s\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (VALID.encode(), len(body), body),
    )
    assert reply.startswith(b"HTTP/1.1 400") and reply.count(b"HTTP/1.1") == 1


def test_the_inference_protocol_routes_are_checked_too(server, api_key_policy):
    tensor = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": list(SETOSA.values())}
    url = f"{server.url}/v2/models/iris"
    assert httpx.get(url).status_code == 401
    assert httpx.post(f"{url}/infer", json={"inputs": [tensor]}).status_code == 401
    answer = httpx.post(f"{url}/infer", json={"inputs": [tensor]}, headers={"x-api-key": VALID})
    assert answer.json()["outputs"][0]["data"] == ["setosa"]


def test_the_openapi_document_declares_the_key_header(server, api_key_policy):
    spec = call(server, VALID, path="/openapi.json").json()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
    }
    assert spec["paths"]["/predict"]["post"]["security"] == [{"ApiKey": []}]


def test_a_changed_access_file_is_picked_up(server, access_file, api_key_policy):
    write_policy(access_file, "api_key", [record(VALID, revoked=True)])
    assert wait_for(server.url, 403, {"x-api-key": VALID}).json() == {"error": "API key revoked"}
    write_policy(access_file, "open")
    wait_for(server.url, 200)


def test_the_allowlist_admits_listed_addresses_and_refuses_others(server, access_file, api_key_policy):
    apply(server, access_file, "ip_allowlist", cidrs=["127.0.0.0/8"])
    assert {response.status_code for response in calls(server)} == {200}
    apply(server, access_file, "ip_allowlist", cidrs=["10.0.0.0/8", "::1/128"])
    for response in calls(server):
        assert (response.status_code, response.json()) == (403, {"error": "address not allowed"})
    # The health checks stay open.
    assert call(server, path="/healthz").status_code == 200
    assert call(server, path="/readyz").status_code == 200


def test_an_allowlist_ignores_forwarded_for_headers(server, access_file, api_key_policy):
    apply(server, access_file, "ip_allowlist", cidrs=["10.0.0.0/8"])
    forged = httpx.post(f"{server.url}/predict", json=SETOSA, headers={"x-forwarded-for": "10.1.2.3"})
    assert forged.status_code == 403


@pytest.mark.parametrize("mode", ["ip_allowlist", "both"])
def test_an_emptied_allowlist_refuses_every_caller_at_once(server, access_file, api_key_policy, mode):
    apply(server, access_file, mode, KEYS, cidrs=["127.0.0.0/8", "::/0"])
    assert {response.status_code for response in calls(server, key=VALID)} == {200}
    answer = apply(server, access_file, mode, KEYS, cidrs=[])
    assert (answer["mode"], answer["networks"]) == (mode, 0)
    for response in calls(server, key=VALID):
        assert response.status_code == 403
        assert "allowlist is empty" in response.json()["error"]
    assert call(server, VALID, path="/v1/model").status_code == 403
    assert call(server, path="/healthz").status_code == 200
    assert call(server, path="/readyz").status_code == 200


def test_a_mode_change_refuses_callers_outside_the_list_right_after_it_is_applied(
    server, access_file, api_key_policy
):
    assert {response.status_code for response in calls(server, key=VALID)} == {200}
    # Keys only -> keys and addresses: a valid key from an address not on the list is refused.
    apply(server, access_file, "both", KEYS, cidrs=["192.0.2.0/24"])
    for response in calls(server, key=VALID):
        assert (response.status_code, response.json()) == (403, {"error": "address not allowed"})
    # Open -> keys: the very next caller without a key is refused.
    apply(server, access_file, "open")
    assert {response.status_code for response in calls(server)} == {200}
    apply(server, access_file, "api_key", KEYS)
    assert {response.status_code for response in calls(server)} == {401}


def test_reload_refuses_an_unusable_file_and_keeps_the_policy_in_force(server, access_file, api_key_policy):
    access_file.write_text('{"mode": "nobody"}')
    answer = server.command("reload_access")
    assert answer["ok"] is False and "mode" in answer["error"]
    assert {response.status_code for response in calls(server)} == {401}


def test_both_mode_needs_an_allowed_address_and_a_valid_key(server, access_file, api_key_policy):
    apply(server, access_file, "both", KEYS, cidrs=["127.0.0.1/32"])
    assert call(server).status_code == 401
    assert call(server, VALID).status_code == 200
    apply(server, access_file, "both", KEYS, cidrs=["192.168.0.0/16"])
    assert call(server, VALID).json() == {"error": "address not allowed"}


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_ipv6_and_ipv4_mapped_peers_are_matched_against_the_right_family(server, access_file, api_key_policy):
    # The server listens on "::": IPv4 clients appear as ::ffff:127.0.0.1 and must match 127.0.0.0/8.
    apply(server, access_file, "ip_allowlist", cidrs=["127.0.0.0/8"])
    assert call(server).status_code == 200
    v6_url = f"http://[::1]:{server.port}"
    assert httpx.post(f"{v6_url}/predict", json=SETOSA).status_code == 403
    apply(server, access_file, "ip_allowlist", cidrs=["::1/128"])
    assert httpx.post(f"{v6_url}/predict", json=SETOSA).status_code == 200
    assert call(server).status_code == 403


# The check itself, in-process: every verdict, and the caches behind them.


def control(tmp_path, mode, keys=KEYS, cidrs=()) -> AccessControl:
    path = tmp_path / "access.json"
    write_policy(path, mode, keys, cidrs)
    return AccessControl(str(path))


def test_the_portals_key_passes_every_check_and_nothing_else_does(tmp_path):
    portal = b"mepp_" + b"p" * 43
    path = tmp_path / "access.json"
    write_policy(path, "both", KEYS, ["10.0.0.0/8"])
    checked = AccessControl(str(path), portal_key=portal)

    assert checked.check("127.0.0.1", portal, b"") is None  # neither a team key nor a listed address
    assert checked.check(None, portal, b"") is None
    assert checked.check("127.0.0.1", portal[:-1] + b"q", b"") is ADDRESS_NOT_ALLOWED
    assert checked.check("10.1.2.3", portal[:-1], b"") is UNKNOWN_KEY
    assert checked.check("10.1.2.3", VALID.encode(), b"") is None
    # A process without a portal key (no control socket) lets nobody past that way.
    assert AccessControl(str(path)).check("10.1.2.3", portal, b"") is UNKNOWN_KEY
    assert AccessControl(str(path), portal_key=b"").check("10.1.2.3", b"", b"") is MISSING_KEY


def test_check_gives_every_verdict(tmp_path):
    both = control(tmp_path, "both", cidrs=["127.0.0.0/8", "::1/128"])
    assert both.check("127.0.0.1", VALID.encode(), b"") is None
    assert both.check("::ffff:127.0.0.1", VALID.encode(), b"") is None
    assert both.check("::1", VALID.encode(), b"") is None
    assert both.check("10.1.2.3", VALID.encode(), b"") is ADDRESS_NOT_ALLOWED
    assert both.check(None, VALID.encode(), b"") is ADDRESS_NOT_ALLOWED
    assert both.check("not an address", VALID.encode(), b"") is ADDRESS_NOT_ALLOWED
    assert both.check("127.0.0.1", None, b"") is MISSING_KEY
    assert both.check("127.0.0.1", b"", b"") is MISSING_KEY
    assert both.check("127.0.0.1", b"nothing-like-a-key", b"") is UNKNOWN_KEY
    assert both.check("127.0.0.1", SAME_PREFIX.encode(), b"") is UNKNOWN_KEY
    assert both.check("127.0.0.1", REVOKED.encode(), b"") is REVOKED_KEY
    assert both.check("127.0.0.1", EXPIRED.encode(), b"") is EXPIRED_KEY
    assert both.check("127.0.0.1", VALID.encode(), b"return=label&Api_Key=x") is QUERY_KEY
    assert both.check("127.0.0.1", VALID.encode(), b"return=label") is None


def test_remembered_keys_and_addresses_give_the_same_verdicts_again(tmp_path):
    both = control(tmp_path, "both", cidrs=["127.0.0.0/8"])
    cases = [
        ("127.0.0.1", VALID),
        ("127.0.0.1", REVOKED),
        ("127.0.0.1", EXPIRED),
        ("127.0.0.1", "nothing-like-a-key"),
        ("10.0.0.1", VALID),
    ]
    first = [both.check(client, secret.encode(), b"") for client, secret in cases]
    assert [both.check(client, secret.encode(), b"") for client, secret in cases] == first
    assert set(both.known_keys) == {VALID.encode(), REVOKED.encode(), EXPIRED.encode()}  # never unknown ones
    assert both.address_cache == {"127.0.0.1": True, "10.0.0.1": False}


def test_a_key_expiring_while_remembered_is_refused_from_then_on(tmp_path, monkeypatch):
    expiry = datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()
    access = control(tmp_path, "api_key", keys=[record(VALID, expires_at=expiry)])
    assert access.check("127.0.0.1", VALID.encode(), b"") is None
    assert VALID.encode() in access.known_keys
    monkeypatch.setattr(access_module, "_wall_clock", lambda: time.time() + 7200)
    access.next_check = 0.0  # the clocks are read again on the next check
    assert access.check("127.0.0.1", VALID.encode(), b"") is EXPIRED_KEY


def test_open_and_allowlist_only_policies_ignore_keys(tmp_path):
    assert control(tmp_path, "open").check("10.0.0.1", None, b"key=x") is None
    allowlist = control(tmp_path, "ip_allowlist", cidrs=["10.0.0.0/8"])
    assert allowlist.check("10.0.0.1", None, b"key=x") is None
    assert allowlist.check("192.168.0.1", VALID.encode(), b"") is ADDRESS_NOT_ALLOWED
    assert control(tmp_path, "ip_allowlist", cidrs=[]).check("192.168.0.1", None, b"") is EMPTY_ALLOWLIST


@pytest.mark.parametrize("mode", ["ip_allowlist", "both"])
def test_an_address_mode_with_no_networks_refuses_every_address(tmp_path, mode):
    empty = control(tmp_path, mode, cidrs=[])
    for client in ("127.0.0.1", "::1", "10.0.0.1", "not an address", None):
        assert empty.check(client, VALID.encode(), b"") is EMPTY_ALLOWLIST
        assert empty.check(client, VALID.encode(), b"") is EMPTY_ALLOWLIST  # and again, from the cache


def test_a_bumped_generation_makes_the_next_check_read_the_file(tmp_path):
    generation = memoryview(bytearray(8)).cast("d")
    path = tmp_path / "access.json"
    write_policy(path, "open")
    access = AccessControl(str(path), generation)
    assert access.check("10.0.0.1", None, b"") is None
    write_policy(path, "ip_allowlist", cidrs=["127.0.0.0/8"])
    access.next_check = float("inf")  # the periodic look at the file is far away
    assert access.check("10.0.0.1", None, b"") is None
    generation[0] += 1
    assert access.check("10.0.0.1", None, b"") is ADDRESS_NOT_ALLOWED
