"""The identity mode: bearer JWTs checked against an issuer's JWKS, served here on loopback.

Each refusal must be a 401 that says why, in the WWW-Authenticate header and in the body; none may
be a 500, whatever the token holds.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time

import httpx
import jwt
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.identity import IdentityPolicy, IdentityVerifier, JwksKeys, Options
from serving.tests.support import SETOSA, Server
from tests.fixtures.jwt_issuer import AUDIENCE, ISSUER, Issuer

CHECKED = Options(leeway=5, jwks_ttl=300, jwks_refresh=0)


@pytest.fixture(scope="module")
def issuer():
    with Issuer() as running:
        yield running


def verifier_for(issuer, options=CHECKED, clock=time.monotonic, **policy) -> IdentityVerifier:
    parsed = IdentityPolicy.parse(issuer.policy(**policy))
    keys = JwksKeys(parsed.jwks_url, options, clock=clock)
    keys.refresh()
    return IdentityVerifier(parsed, keys, options)


def check(verifier, token, now=None):
    value = token if isinstance(token, bytes) else f"Bearer {token}".encode()
    return verifier.check(value, time.time() if now is None else now)


def b64(document) -> str:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_token_signed_by_the_issuer_passes_with_rs256_and_es256(issuer):
    verifier = verifier_for(issuer)
    assert check(verifier, issuer.token()) is None
    assert check(verifier, issuer.token(algorithm="ES256")) is None


@pytest.mark.parametrize(
    ("claims", "reason", "words"),
    [
        ({"exp": int(time.time()) - 3600}, "expired", "expired at"),
        ({"nbf": int(time.time()) + 3600}, "not_yet_valid", "not valid yet"),
        ({"aud": "https://someone-else.test"}, "wrong_audience", AUDIENCE),
        ({"iss": "https://another-issuer.test"}, "wrong_issuer", ISSUER),
        ({"exp": None}, "missing_claim", "'exp'"),
        ({"aud": None}, "missing_claim", "'aud'"),
    ],
)
def test_a_token_with_wrong_claims_is_refused_saying_why(issuer, claims, reason, words):
    denial = check(verifier_for(issuer), issuer.token(**claims))
    assert (denial.status, denial.reason) == (401, reason)
    assert words in denial.message
    assert denial.challenge.startswith(
        b'Bearer error="invalid_token", error_description="Invalid bearer token'
    )


def test_a_token_signed_by_another_key_with_a_known_kid_has_a_bad_signature(issuer):
    forger = Issuer()
    try:
        forged = forger.token(kid=forger.kid("RS256"))
        header = json.loads(base64.urlsafe_b64decode(forged.split(".")[0] + "=="))
        header["kid"] = issuer.kid("RS256")
        forged = b64(header) + "." + forged.split(".", 1)[1]
        denial = check(verifier_for(issuer), forged)
        assert (denial.reason, "bad signature" in denial.message) == ("bad_signature", True)
    finally:
        forger.close()


def test_a_token_naming_a_key_id_nobody_published_is_an_unknown_key(issuer):
    token = issuer.token()
    header, rest = token.split(".", 1)
    renamed = b64({**json.loads(base64.urlsafe_b64decode(header + "==")), "kid": "gone-key"}) + "." + rest
    denial = check(verifier_for(issuer), renamed)
    assert denial.reason == "unknown_key"
    assert "'gone-key'" in denial.message


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ({"alg": "none", "typ": "JWT"}, "an unsigned token is not accepted"),
        ({"alg": "HS256", "typ": "JWT", "kid": "x"}, "algorithm HS256 (a shared secret) is not accepted"),
        ({"alg": "RS512", "typ": "JWT", "kid": "x"}, "RS256 or ES256"),
    ],
)
def test_unsigned_and_shared_secret_tokens_are_refused_for_what_they_are(issuer, header, words):
    token = b64(header) + "." + b64({"iss": ISSUER, "aud": AUDIENCE, "exp": 9999999999}) + "."
    if header["alg"] == "HS256":
        token = jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "exp": 9999999999}, "s" * 32, headers={"kid": "x"}
        )
    denial = check(verifier_for(issuer), token)
    assert denial.reason == "algorithm"
    assert words in denial.message


def test_an_rs256_token_naming_an_ec_key_is_refused(issuer):
    token = issuer.token()
    header, rest = token.split(".", 1)
    swapped = (
        b64({**json.loads(base64.urlsafe_b64decode(header + "==")), "kid": issuer.kid("ES256")}) + "." + rest
    )
    assert check(verifier_for(issuer), swapped).reason == "bad_signature"


@pytest.mark.parametrize(
    "value", [b"", b"Bearer ", b"Bearer not-a-jwt", b"Bearer a.b.c", b"Bearer \xff\xfe.."]
)
def test_malformed_or_missing_tokens_are_refused(issuer, value):
    denial = check(verifier_for(issuer), value)
    assert denial.status == 401
    assert denial.reason in ("missing", "malformed")


def test_another_authorization_scheme_is_refused_as_a_bad_request_for_a_bearer_token(issuer):
    denial = check(verifier_for(issuer), b"Basic dXNlcjpwYXNz")
    assert denial.reason == "not_bearer"
    assert denial.challenge.startswith(b'Bearer error="invalid_request"')
    assert verifier_for(issuer).check(None, time.time()).challenge == b'Bearer realm="model-endpoint"'


def test_a_required_claim_must_carry_its_value(issuer):
    verifier = verifier_for(issuer, claim={"name": "groups", "value": "ml-callers"})
    assert check(verifier, issuer.token(groups=["staff", "ml-callers"])) is None
    assert check(verifier, issuer.token(groups="ml-callers")) is None
    wrong = check(verifier, issuer.token(groups=["staff"]))
    assert (wrong.reason, "'groups' claim is not 'ml-callers'" in wrong.message) == ("missing_claim", True)
    assert "has no 'groups' claim" in check(verifier, issuer.token()).message


def test_a_key_rotation_is_picked_up_on_the_first_token_naming_the_new_key(issuer):
    rotating = Issuer()
    try:
        verifier = verifier_for(rotating)
        assert check(verifier, rotating.token()) is None
        fetched = rotating.fetches
        new_kid = rotating.rotate()
        assert check(verifier, rotating.token(kid=new_kid)) is None
        assert rotating.fetches == fetched + 1
        assert new_kid in verifier.keys.keys
    finally:
        rotating.close()


def test_unknown_key_ids_fetch_the_keys_no_more_often_than_the_refresh_interval(issuer):
    now = [1000.0]
    options = Options(leeway=5, jwks_ttl=300, jwks_refresh=30)
    verifier = verifier_for(issuer, options, clock=lambda: now[0])
    fetched = issuer.fetches
    token = issuer.token()
    header, rest = token.split(".", 1)
    for index in range(20):
        made_up = (
            b64({**json.loads(base64.urlsafe_b64decode(header + "==")), "kid": f"k{index}"}) + "." + rest
        )
        assert check(verifier, made_up).reason == "unknown_key"
    assert issuer.fetches == fetched  # fetched at load, less than 30 s ago
    now[0] += 31
    assert check(verifier, made_up).reason == "unknown_key"
    assert issuer.fetches == fetched + 1


def test_the_keys_are_fetched_again_once_their_ttl_has_passed(issuer):
    now = [1000.0]
    verifier = verifier_for(issuer, Options(leeway=5, jwks_ttl=60, jwks_refresh=1), clock=lambda: now[0])
    fetched = issuer.fetches
    assert check(verifier, issuer.token()) is None
    assert issuer.fetches == fetched
    now[0] += 61
    assert check(verifier, issuer.token(sub="another")) is None  # the held key answers at once
    deadline = time.monotonic() + 10
    while issuer.fetches == fetched and time.monotonic() < deadline:  # the thread's fetch
        time.sleep(0.01)
    assert issuer.fetches == fetched + 1
    assert check(verifier, issuer.token(sub="a third")) is None
    assert issuer.fetches == fetched + 1  # fresh again: no fetch


def test_a_verified_token_is_remembered_until_it_expires(issuer):
    verifier = verifier_for(issuer)
    now = time.time()
    token = issuer.token(exp=int(now) + 100)
    assert check(verifier, token, now) is None
    assert len(verifier.passed) == 1
    assert check(verifier, token, now + 50) is None
    assert check(verifier, token, now + 200).reason == "expired"
    assert not verifier.passed


def test_no_keys_at_all_is_a_503_not_a_401(issuer):
    parsed = IdentityPolicy.parse(issuer.policy(jwks_url="http://127.0.0.1:9/nothing"))
    keys = JwksKeys(parsed.jwks_url, CHECKED)
    keys.refresh()
    denial = IdentityVerifier(parsed, keys, CHECKED).check(f"Bearer {issuer.token()}".encode(), time.time())
    assert denial.status == 503


@pytest.mark.parametrize(
    "raw",
    [None, {}, {"issuer": "x", "audience": "y"}, {"issuer": "x", "audience": "y", "jwks_url": "file:///etc"}],
)
def test_an_incomplete_identity_policy_is_refused(raw):
    with pytest.raises(ValueError, match="identity"):
        IdentityPolicy.parse(raw)


tokenish = st.one_of(
    st.binary(max_size=300),
    st.lists(st.text(max_size=80), min_size=1, max_size=5).map(lambda parts: ".".join(parts).encode()),
    st.tuples(
        st.dictionaries(
            st.sampled_from(["alg", "kid", "typ", "crit"]),
            st.one_of(st.text(max_size=10), st.integers(), st.none()),
        ),
        st.dictionaries(
            st.sampled_from(["iss", "aud", "exp", "nbf", "iat", "groups"]),
            st.one_of(
                st.text(max_size=20), st.integers(), st.floats(), st.lists(st.text(max_size=5)), st.none()
            ),
        ),
    ).map(lambda parts: (b64(parts[0]) + "." + b64(parts[1]) + ".c2ln").encode()),
)


@pytest.fixture(scope="module")
def fuzzed_verifier(issuer):
    return verifier_for(issuer, Options(leeway=5, jwks_ttl=300, jwks_refresh=3600))


@settings(max_examples=300)
@given(token=tokenish)
def test_any_token_is_refused_or_accepted_never_raises(fuzzed_verifier, token):
    denial = fuzzed_verifier.check(b"Bearer " + token, time.time())
    assert denial is not None and denial.status == 401
    status, body, _ = denial.response()
    assert status == 401 and orjson.loads(body)["reason"]


# A serving process in identity mode ------------------------------------------------------------


def write_policy(path, document) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_bytes(orjson.dumps(document))
    os.replace(staging, path)


@pytest.fixture(scope="module")
def server(iris_env, issuer, tmp_path_factory):
    directory = tmp_path_factory.mktemp("identity")
    access_file = directory / "access.json"
    write_policy(access_file, {"mode": "api_key", "keys": [], "cidrs": []})
    env = {
        **iris_env,
        "SERVING_ACCESS_FILE": str(access_file),
        "SERVING_WORKERS": "2",
        "SERVING_CONTROL_SOCKET": str(directory / "control.sock"),
        "SERVING_JWKS_REFRESH_SECONDS": "0",
    }
    running = Server(env, directory / "server.log").wait_ready()
    assert running.command("serve")["ok"]
    running.access_file = access_file
    yield running
    running.terminate()


def switch_to_identity(server, issuer, **policy):
    write_policy(server.access_file, {"mode": "identity", "identity": issuer.policy(**policy)})
    answer = server.command("reload_access")
    assert answer["ok"], answer
    return answer


def predict(server, token=None, **headers):
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(f"{server.url}/predict", json=SETOSA, headers={"connection": "close", **headers})


def test_switching_a_running_server_to_identity_takes_effect_at_once(server, issuer):
    write_policy(server.access_file, {"mode": "open"})
    assert server.command("reload_access")["ok"]
    assert predict(server).status_code == 200
    answer = switch_to_identity(server, issuer)
    assert (answer["mode"], answer["issuer"], answer["audience"]) == ("identity", ISSUER, AUDIENCE)
    for _ in range(4):  # both workers
        refused = predict(server)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="model-endpoint"'
        assert predict(server, issuer.token()).json()["target"] == "setosa"


def test_a_refused_token_gets_a_401_with_its_reason_in_the_header_body_and_log(server, issuer):
    switch_to_identity(server, issuer)
    refused = predict(server, issuer.token(aud="https://elsewhere.test"))
    assert refused.status_code == 401
    assert refused.json()["reason"] == "wrong_audience"
    assert refused.headers["www-authenticate"].startswith('Bearer error="invalid_token", error_description="')
    assert "wrong audience" in refused.headers["www-authenticate"]
    deadline = time.monotonic() + 5
    while "wrong audience" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(json.loads(text) for text in server.output().splitlines() if "wrong audience" in text)
    assert (line["status"], line["path"]) == (401, "/predict")


def test_a_new_signing_key_is_fetched_by_the_running_server(server):
    with Issuer() as rotating:
        switch_to_identity(server, rotating)
        assert predict(server, rotating.token()).status_code == 200
        new_kid = rotating.rotate()
        assert predict(server, rotating.token(kid=new_kid)).status_code == 200


def test_two_authorization_headers_are_a_400(server, issuer):
    switch_to_identity(server, issuer)
    response = httpx.post(
        f"{server.url}/predict",
        json=SETOSA,
        headers=[("authorization", f"Bearer {issuer.token()}"), ("authorization", "Bearer x")],
    )
    assert response.status_code == 400
    assert "one Authorization header" in response.json()["error"]


def test_the_portal_key_passes_the_identity_check(server, issuer):
    switch_to_identity(server, issuer)
    portal_key = server.command("portal_key")
    key = portal_key.get("key")
    assert key, portal_key
    assert predict(server, **{"x-api-key": key}).status_code == 200


header_values = st.one_of(
    st.binary(min_size=1, max_size=200).filter(lambda value: b"\r" not in value and b"\n" not in value),
    tokenish.map(lambda token: b"Bearer " + token.replace(b"\r", b"").replace(b"\n", b"")),
)


@settings(max_examples=150)
@given(value=header_values)
def test_any_authorization_header_sent_to_the_server_gets_a_reasoned_4xx_never_a_5xx(server, issuer, value):
    if json.loads(server.access_file.read_bytes()).get("mode") != "identity":
        switch_to_identity(server, issuer)
    body = orjson.dumps(SETOSA)
    request = b"".join(
        [
            b"POST /predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\nconnection: close\r\n",
            b"authorization: " + value.strip(b" \t") + b"\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body,
        ]
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(request)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    assert status in (400, 401), reply[:300]
    document = orjson.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert document["error"]


def test_the_openapi_document_declares_the_bearer_scheme_in_identity_mode(server, issuer):
    switch_to_identity(server, issuer)
    headers = {"authorization": f"Bearer {issuer.token()}"}
    spec = httpx.get(f"{server.url}/openapi.json", headers=headers).json()
    assert spec["components"]["securitySchemes"] == {
        "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    assert spec["paths"]["/predict"]["post"]["security"] == [{"BearerAuth": []}]
