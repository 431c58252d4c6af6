"""API keys and the address allowlist, read from SERVING_ACCESS_FILE and re-read when it changes."""

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
    # One worker, so the first answer under a new policy shows the policy is in force.
    env = {**iris_env, "SERVING_ACCESS_FILE": str(access_file)}
    running = Server(env, access_file.parent / "server.log", host=host).wait_ready()
    yield running
    running.terminate()


@pytest.fixture
def api_key_policy(access_file, server):
    """Each test starts from the key policy."""
    if write_policy(access_file, "api_key", KEYS):
        wait_for(server.url, 401)


def wait_for(url, status, headers=None, timeout=5.0):
    """Poll /predict until it answers `status` (the file is looked at every half second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = httpx.post(f"{url}/predict", json=SETOSA, headers=headers or {})
        if answer.status_code == status:
            return answer
        time.sleep(0.05)
    raise AssertionError(f"never saw {status}; last {answer.status_code} {answer.text}")


def call(server, key=None, path="/predict", params=None):
    headers = {"x-api-key": key} if key else {}
    if path == "/predict":
        return httpx.post(f"{server.url}{path}", json=SETOSA, headers=headers, params=params)
    return httpx.get(f"{server.url}{path}", headers=headers, params=params)


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


def test_open_routes_need_no_key(server, api_key_policy):
    for path in ("/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/v2/health/ready"):
        assert call(server, path=path).status_code == 200, path


def test_the_inference_protocol_routes_are_checked_too(server, api_key_policy):
    tensor = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": list(SETOSA.values())}
    url = f"{server.url}/v2/models/iris"
    assert httpx.get(url).status_code == 401
    assert httpx.post(f"{url}/infer", json={"inputs": [tensor]}).status_code == 401
    answer = httpx.post(f"{url}/infer", json={"inputs": [tensor]}, headers={"x-api-key": VALID})
    assert answer.json()["outputs"][0]["data"] == ["setosa"]


def test_the_openapi_document_declares_the_key_header(server, api_key_policy):
    spec = call(server, path="/openapi.json").json()
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
    write_policy(access_file, "ip_allowlist", cidrs=["127.0.0.0/8"])
    wait_for(server.url, 200)
    write_policy(access_file, "ip_allowlist", cidrs=["10.0.0.0/8", "::1/128"])
    response = wait_for(server.url, 403)
    assert response.json() == {"error": "address not allowed"}
    # The open routes stay open.
    assert call(server, path="/healthz").status_code == 200


def test_an_allowlist_ignores_forwarded_for_headers(server, access_file, api_key_policy):
    write_policy(access_file, "ip_allowlist", cidrs=["10.0.0.0/8"])
    wait_for(server.url, 403)
    forged = httpx.post(f"{server.url}/predict", json=SETOSA, headers={"x-forwarded-for": "10.1.2.3"})
    assert forged.status_code == 403


def test_an_empty_allowlist_restricts_no_address(server, access_file, api_key_policy):
    write_policy(access_file, "ip_allowlist", cidrs=[])
    wait_for(server.url, 200)


def test_both_mode_needs_an_allowed_address_and_a_valid_key(server, access_file, api_key_policy):
    write_policy(access_file, "both", KEYS, cidrs=["127.0.0.1/32"])
    wait_for(server.url, 401)
    assert call(server, VALID).status_code == 200
    write_policy(access_file, "both", KEYS, cidrs=["192.168.0.0/16"])
    assert wait_for(server.url, 403, {"x-api-key": VALID}).json() == {"error": "address not allowed"}


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_ipv6_and_ipv4_mapped_peers_are_matched_against_the_right_family(server, access_file, api_key_policy):
    # The server listens on "::": IPv4 clients appear as ::ffff:127.0.0.1 and must match 127.0.0.0/8.
    write_policy(access_file, "ip_allowlist", cidrs=["127.0.0.0/8"])
    wait_for(server.url, 200)
    v6_url = f"http://[::1]:{server.port}"
    assert httpx.post(f"{v6_url}/predict", json=SETOSA).status_code == 403
    write_policy(access_file, "ip_allowlist", cidrs=["::1/128"])
    wait_for(v6_url, 200)
    wait_for(server.url, 403)


# The check itself, in-process: every verdict, and the caches behind them.


def control(tmp_path, mode, keys=KEYS, cidrs=()) -> AccessControl:
    path = tmp_path / "access.json"
    write_policy(path, mode, keys, cidrs)
    return AccessControl(str(path))


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
    assert control(tmp_path, "ip_allowlist", cidrs=[]).check("192.168.0.1", None, b"") is None
