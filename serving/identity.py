"""Check `Authorization: Bearer <JWT>` for the identity access mode: signature, issuer, audience,
expiry and, where the endpoint asks for one, a required claim.

    verifier = IdentityVerifier(IdentityPolicy.parse(raw["identity"]), JwksKeys(url), options)
    denial = verifier.check(authorization_header_value, time.time())  # None: let it in

Only RS256 and ES256 are accepted: a token signed with `none` or a shared secret (HS256) is
refused for what it is. The signing keys come from the policy's JWKS URL, fetched when the policy
is loaded, again after `jwks_ttl` seconds (in a thread: the keys held answer meanwhile), and at
once when a token names a key id the set does not have (a key rotation), at most once every
`jwks_refresh` seconds so a flood of made-up key ids cannot become a flood of fetches. A fetch
that fails keeps the keys already held.

A verified token is remembered until it expires (or the key set changes), keyed by the header's
value, so a caller that repeats its token pays a dict lookup, not a signature check. Every refusal
is a 401 whose `WWW-Authenticate` header and JSON body say why (expired, not yet valid, wrong
audience, wrong issuer, unknown key id, bad signature, missing claim, malformed); the check never
raises.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
import orjson

from serving.protocol import Response, json_response, with_header

log = logging.getLogger("serving.identity")

ALGORITHMS = ("RS256", "ES256")
KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}
MAX_CACHED_TOKENS = 4096
MAX_TOKEN_BYTES = 8192
JWKS_TIMEOUT = 3.0
MAX_JWKS_BYTES = 1 << 20


@dataclass(frozen=True)
class Options:
    """How strict and how fresh: SERVING_JWT_LEEWAY_SECONDS, SERVING_JWKS_TTL_SECONDS,
    SERVING_JWKS_REFRESH_SECONDS."""

    leeway: float = 30.0  # clock skew allowed on exp, nbf and iat
    jwks_ttl: float = 300.0  # keys are fetched again after this long
    jwks_refresh: float = 30.0  # the least time between fetches for an unknown key id


@dataclass(frozen=True)
class TokenDenial:
    """A refused token: `reason` is the code, `message` what the caller reads."""

    reason: str
    message: str
    status: int = 401

    @property
    def challenge(self) -> bytes:
        """The WWW-Authenticate value (RFC 6750): no error code when no token was sent."""
        if self.reason == "missing":
            return b'Bearer realm="model-endpoint"'
        # error_description is a quoted string of printable ASCII without " or \.
        description = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in self.message)
        error = "invalid_request" if self.reason == "not_bearer" else "invalid_token"
        return f'Bearer error="{error}", error_description="{description[:300]}"'.encode()

    def response(self) -> Response:
        body = {"error": self.message, "reason": self.reason}
        return with_header(json_response(self.status, body), b"www-authenticate", self.challenge)


def _denial(reason: str, message: str) -> TokenDenial:
    return TokenDenial(reason, f"Invalid bearer token: {message}")


MISSING = TokenDenial("missing", "Missing bearer token: send it as Authorization: Bearer <JWT>.")
NOT_BEARER = TokenDenial(
    "not_bearer", "This endpoint takes a JWT in the Authorization header as: Bearer <JWT>."
)
KEYS_UNAVAILABLE = TokenDenial(
    "keys_unavailable",
    "The signing keys to check tokens with could not be fetched; try again shortly.",
    status=503,
)


@dataclass(frozen=True)
class IdentityPolicy:
    """What a token must carry: who issued it, for whom, and optionally one claim's value."""

    issuer: str
    audience: str
    jwks_url: str
    claim_name: str = ""
    claim_value: str = ""

    @classmethod
    def parse(cls, raw) -> IdentityPolicy:
        if not isinstance(raw, dict):
            raise ValueError('the identity mode needs an "identity" object (issuer, audience, jwks_url)')
        values = {}
        for name in ("issuer", "audience", "jwks_url"):
            value = raw.get(name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"identity.{name} must be a non-empty string")
            values[name] = value.strip()
        if not values["jwks_url"].startswith(("https://", "http://")):
            raise ValueError("identity.jwks_url must be an http(s) URL")
        claim = raw.get("claim") or {}
        if not isinstance(claim, dict):
            raise ValueError("identity.claim must be an object with name and value")
        claim_name, claim_value = str(claim.get("name") or ""), str(claim.get("value") or "")
        if bool(claim_name) != bool(claim_value):
            raise ValueError("identity.claim needs both a name and a value")
        return cls(**values, claim_name=claim_name, claim_value=claim_value)


class JwksKeys:
    """The signing keys published at one JWKS URL, by key id, fetched again when stale.

    Shared by every policy of the process that names the same URL, so a reload of the access
    file (a key added, an allowlist changed) does not fetch the keys again."""

    def __init__(self, url: str, options: Options, *, clock=time.monotonic):
        self.url = url
        self.options = options
        self.clock = clock
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fetched_at: float | None = None  # last successful fetch
        self.tried_at: float | None = None  # last attempt, successful or not
        self.version = 0  # bumped when the set of key ids changes

    def get(self, kid: str) -> jwt.PyJWK | None:
        """The key with this id. An unknown id fetches the set first (the caller waits: the answer
        depends on it); a known key of a stale set is used while a thread fetches the set again.
        Never more than one fetch every jwks_refresh seconds."""
        now = self.clock()
        key = self.keys.get(kid)
        if key is not None and self.fetched_at is not None and now - self.fetched_at < self.options.jwks_ttl:
            return key
        if self.tried_at is not None and now - self.tried_at < self.options.jwks_refresh:
            return key
        if key is None:
            self.refresh()
            return self.keys.get(kid)
        self.tried_at = now  # the thread's fetch counts from now
        threading.Thread(target=self.refresh, name="jwks-refresh", daemon=True).start()
        return key

    def refresh(self) -> bool:
        """Fetch the key set now; False (keeping the keys held) when it cannot be had."""
        self.tried_at = self.clock()
        try:
            keys = self._fetch()
        except Exception as exc:  # noqa: BLE001 (any failure keeps the old keys; none reaches a caller)
            log.warning("Could not fetch the signing keys from %s: %s", self.url, exc)
            return False
        if set(keys) != set(self.keys):
            self.version += 1
        self.keys = keys
        self.fetched_at = self.tried_at
        return True

    def _fetch(self) -> dict[str, jwt.PyJWK]:
        request = urllib.request.Request(self.url, headers={"accept": "application/json"})
        with urllib.request.urlopen(request, timeout=JWKS_TIMEOUT) as response:  # noqa: S310 (http(s) only: IdentityPolicy)
            body = response.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError("the key set is larger than 1 MiB")
        document = orjson.loads(body)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError('not a JWK set: no "keys" list')
        keys = {}
        for entry in document["keys"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            if entry.get("use", "sig") != "sig" or entry.get("kty") not in ("RSA", "EC"):
                continue
            try:
                keys[entry["kid"]] = jwt.PyJWK(entry)
            except jwt.PyJWTError as exc:
                log.warning("Skipping key %s of %s: %s", entry["kid"], self.url, exc)
        return keys


def _when(moment) -> str:
    try:
        return datetime.fromtimestamp(float(moment), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return "an unreadable time"


class IdentityVerifier:
    """Checks bearer tokens against one identity policy; remembers the ones that passed."""

    def __init__(self, policy: IdentityPolicy, keys: JwksKeys, options: Options):
        self.policy = policy
        self.keys = keys
        self.options = options
        self.passed: dict[bytes | None, float] = {}  # Authorization value -> exp + leeway (Unix time)
        self.keys_version = keys.version
        self.last: bytes | None = None  # the Authorization value that passed last, and until when
        self.last_until = 0.0

    def check(self, authorization: bytes | None, now: float) -> TokenDenial | None:
        """None if the Authorization header carries a token this policy accepts, else why not.

        `now` is Unix time. Never raises. A header whose token passed is remembered by its value
        (the dict hashes it: a tenth of what SHA-256 costs here) until the token's exp; the last
        one is compared first (a memcmp, cheaper still than the hash of a long token)."""
        if self.keys.version != self.keys_version:  # a key may have gone: check every token again
            self.passed.clear()
            self.last = None
            self.keys_version = self.keys.version
        elif authorization == self.last and now < self.last_until:
            return None
        until = self.passed.get(authorization)
        if until is not None:
            if now < until:
                self.last, self.last_until = authorization, until
                return None
            del self.passed[authorization]
        if not authorization:
            return MISSING
        if authorization[:7].lower() != b"bearer ":
            return NOT_BEARER
        try:
            denial, expires = self._verify(authorization[7:].strip(), now)
        except Exception as exc:  # noqa: BLE001 (a token must never turn into a 500)
            log.warning("Refusing a token that could not be read: %r", exc)
            return _denial("malformed", "the token could not be read as a signed JWT.")
        if denial is None:
            if len(self.passed) >= MAX_CACHED_TOKENS:
                self.passed.clear()
            self.passed[authorization] = expires + self.options.leeway
            self.last, self.last_until = authorization, expires + self.options.leeway
        return denial

    def _verify(self, token: bytes, now: float) -> tuple[TokenDenial | None, float]:
        if not token:
            return MISSING, 0.0
        if len(token) > MAX_TOKEN_BYTES:
            return _denial("malformed", f"the token is longer than {MAX_TOKEN_BYTES} bytes."), 0.0
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return _denial("malformed", "it is not a JWT (header.payload.signature, base64url)."), 0.0
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            shown = str(algorithm)[:20]
            why = "an unsigned token" if shown.lower() == "none" else f"algorithm {shown}"
            if shown.upper().startswith("HS"):
                why += " (a shared secret)"
            return _denial(
                "algorithm", f"{why} is not accepted: tokens must be signed with RS256 or ES256."
            ), 0.0
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            return _denial("unknown_key", "the token names no key id (kid)."), 0.0
        key = self.keys.get(kid)
        if key is None:
            if not self.keys.keys and self.keys.fetched_at is None:
                return KEYS_UNAVAILABLE, 0.0
            return _denial(
                "unknown_key", f"unknown key id {kid[:64]!r}: no such key at the issuer's JWKS URL."
            ), 0.0
        if key.key_type != KEY_TYPES[algorithm]:
            return _denial("bad_signature", f"key {kid[:64]!r} is not a key for {algorithm}."), 0.0
        policy = self.policy
        try:
            # The times are checked below against `now`, the clock the cache uses too.
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=policy.audience,
                issuer=policy.issuer,
                options={
                    "require": ["exp", "iss", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError:
            return _denial(
                "wrong_audience", f"wrong audience: this endpoint takes tokens for {policy.audience}."
            ), 0.0
        except jwt.InvalidIssuerError:
            return _denial(
                "wrong_issuer", f"wrong issuer: this endpoint takes tokens issued by {policy.issuer}."
            ), 0.0
        except jwt.InvalidSignatureError:
            return _denial(
                "bad_signature", "bad signature: the token was not signed by the issuer's key."
            ), 0.0
        except jwt.MissingRequiredClaimError as exc:
            return _denial("missing_claim", f"the token has no {exc.claim!r} claim."), 0.0
        except jwt.PyJWTError as exc:
            return _denial("malformed", f"{exc}."), 0.0
        leeway = self.options.leeway
        times = {name: claims.get(name) for name in ("exp", "nbf", "iat")}
        for name, value in times.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                return _denial("malformed", f"the {name} claim is not a number."), 0.0
        if times["exp"] + leeway <= now:
            return _denial("expired", f"the token expired at {_when(times['exp'])}."), 0.0
        for name in ("nbf", "iat"):
            if times[name] is not None and times[name] > now + leeway:
                return _denial(
                    "not_yet_valid", f"the token is not valid yet ({name} is {_when(times[name])})."
                ), 0.0
        if policy.claim_name:
            found = claims.get(policy.claim_name)
            wanted = policy.claim_value
            ok = found == wanted or (isinstance(found, list) and wanted in found)
            if not ok:
                return _denial(
                    "missing_claim",
                    f"the token's {policy.claim_name!r} claim is not {wanted!r}."
                    if found is not None
                    else f"the token has no {policy.claim_name!r} claim.",
                ), 0.0
        return None, float(times["exp"])
