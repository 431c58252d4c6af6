"""Check end-user requests against SERVING_ACCESS_FILE: API keys, address allowlist, both, or a
bearer token (the identity mode, checked by `serving.identity`).

The file is re-read when its stat signature changes, looked at no more than every half second, and
at once when the supervisor bumps the shared generation (the control socket's `reload_access`,
which the portal sends after it rewrites the file), so a change is in force for every request
that arrives after the command returns. An address mode with an empty allowlist refuses every
caller: an allowlist is a list of who may call, and nobody is on it. A key is verified once
(prefix lookup, sha256, constant-time comparison) and then remembered for as long as the policy
stands, so the usual per-request cost is a clock read, a shared-memory read and two dict lookups.
A file that turns unreadable or invalid after start keeps the last good policy in force (and
says so in the log).

The portal's key: a serving process with a control socket makes a random key when it starts and
gives it to whoever asks over that socket (only the portal's own user can). A request carrying it
in x-api-key passes the checks: it is how the dashboard's playground calls the endpoint for an
admin or a key holder, without a team key and from the portal's own address. It lives in memory
only, never in a file or the portal's database, and ends with the process. It is compared only
for requests the policy would refuse, so the usual request pays nothing for it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import orjson

from serving.config import ConfigError
from serving.identity import IdentityPolicy, IdentityVerifier, JwksKeys, Options, TokenDenial
from serving.protocol import Response, error_response

log = logging.getLogger("serving.access")

MODES = ("api_key", "ip_allowlist", "both", "open", "identity")
KEY_PREFIX_LENGTH = 12
QUERY_KEY_NAMES = frozenset({"key", "api_key", "apikey", "x-api-key"})
RECHECK_SECONDS = 0.5
MAX_CACHED_ADDRESSES = 4096
MAX_CACHED_KEYS = 4096
_monotonic = time.monotonic
_wall_clock = time.time


@dataclass(frozen=True)
class Denial:
    status: int
    message: str

    def response(self) -> Response:
        return error_response(self.status, self.message)


MISSING_KEY = Denial(401, "Missing API key: send it in the x-api-key header.")
QUERY_KEY = Denial(
    401,
    "API keys are accepted only in a header: send the key in the x-api-key header; "
    "keys in the query string are refused.",
)
UNKNOWN_KEY = Denial(401, "Unknown API key.")
REVOKED_KEY = Denial(403, "API key revoked")
EXPIRED_KEY = Denial(403, "API key expired")
ADDRESS_NOT_ALLOWED = Denial(403, "address not allowed")
EMPTY_ALLOWLIST = Denial(
    403, "address not allowed: this endpoint's allowlist is empty, so it refuses every caller"
)


@dataclass(frozen=True, slots=True)
class Key:
    hash: str
    expires_at: float | None  # Unix time
    revoked: bool


def _expiry(value) -> float | None:
    if value in (None, ""):
        return None
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class Policy:
    mode: str
    keys: dict[str, tuple[Key, ...]]  # by prefix
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    identity: IdentityPolicy | None = None  # what a bearer token must carry (identity mode)

    @classmethod
    def parse(cls, raw) -> Policy:
        if not isinstance(raw, dict) or raw.get("mode") not in MODES:
            raise ValueError(f'"mode" must be one of {", ".join(MODES)}')
        keys: dict[str, list[Key]] = {}
        for index, entry in enumerate(raw.get("keys") or ()):
            try:
                prefix, digest = str(entry["prefix"]), str(entry["hash"]).lower()
                key = Key(digest, _expiry(entry.get("expires_at")), bool(entry.get("revoked", False)))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"keys[{index}] is not a valid key record ({exc})") from None
            keys.setdefault(prefix, []).append(key)
        try:
            networks = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in raw.get("cidrs") or ())
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cidrs: {exc}") from None
        identity = IdentityPolicy.parse(raw.get("identity")) if raw["mode"] == "identity" else None
        return cls(raw["mode"], {prefix: tuple(found) for prefix, found in keys.items()}, networks, identity)


def _read(path: str) -> Policy:
    with open(path, "rb") as handle:
        return Policy.parse(orjson.loads(handle.read()))


def validate_file(path: str) -> Policy:
    """Fail at start, with a clear message, if the access file cannot be used."""
    try:
        return _read(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"SERVING_ACCESS_FILE {path} cannot be used: {exc}") from None


def describe(policy: Policy) -> dict:
    """What a policy enforces, in numbers (the control socket's answer to `reload_access`)."""
    keys = sum(1 for found in policy.keys.values() for key in found if not key.revoked)
    described = {"mode": policy.mode, "active_keys": keys, "networks": len(policy.networks)}
    if policy.identity is not None:
        described["issuer"] = policy.identity.issuer
        described["audience"] = policy.identity.audience
    return described


class AccessControl:
    """The policy in force in this process, refreshed from the file when it changes."""

    def __init__(
        self,
        path: str,
        generation: memoryview | None = None,
        portal_key: bytes | None = None,
        identity_options: Options | None = None,
    ):
        self.path = path
        self.portal_key = portal_key
        self.identity_options = identity_options or Options()
        self.jwks: dict[str, JwksKeys] = {}  # by URL, kept across reloads
        # Bumped by the supervisor when told the file changed; one slot, shared by every worker.
        self.generation = generation if generation is not None else memoryview(bytearray(8)).cast("d")
        self.seen_generation = self.generation[0]
        self.signature = self._signature()
        self._apply(_read(path))
        self.next_check = time.monotonic() + RECHECK_SECONDS
        self.wall_offset = time.time() - time.monotonic()  # Unix time = monotonic + offset

    def _signature(self):
        stat = os.stat(self.path)
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def _apply(self, policy: Policy) -> None:
        self.policy = policy
        self.check_keys = policy.mode in ("api_key", "both")
        self.check_address = policy.mode in ("ip_allowlist", "both")
        self.verifier = self._verifier(policy.identity) if policy.identity is not None else None
        # Fail closed: an address mode with nobody on the list refuses everyone.
        self.address_denial = ADDRESS_NOT_ALLOWED if policy.networks else EMPTY_ALLOWLIST
        self.address_cache: dict[str, bool] = {}
        self.known_keys: dict[bytes, Key] = {}  # secret -> record, for keys already verified

    def _verifier(self, identity: IdentityPolicy) -> IdentityVerifier:
        """A verifier for the policy; the keys of its JWKS URL are fetched now unless already held."""
        keys = self.jwks.get(identity.jwks_url)
        if keys is None:
            keys = self.jwks[identity.jwks_url] = JwksKeys(identity.jwks_url, self.identity_options)
            keys.refresh()
        return IdentityVerifier(identity, keys, self.identity_options)

    def refresh(self) -> None:
        try:
            signature = self._signature()
            if signature == self.signature:
                return
            policy = _read(self.path)
        except (OSError, ValueError) as exc:
            log.warning("Keeping the previous access policy: %s cannot be used (%s).", self.path, exc)
            return
        self.signature = signature
        self._apply(policy)
        log.info("Access policy reloaded from %s (mode %s).", self.path, policy.mode)

    def check(
        self, client: str | None, secret: bytes | None, query: bytes, bearer: bytes | None = None
    ) -> Denial | TokenDenial | None:
        """None if the request may pass, else why not; `secret` is the x-api-key header, `bearer`
        the Authorization header.

        The portal's key is looked at only where the policy would refuse (an address not listed,
        a key not known), so a request the policy lets in pays nothing for it."""
        now = _monotonic()
        if now >= self.next_check or self.generation[0] != self.seen_generation:
            self.seen_generation = self.generation[0]
            self.next_check = now + RECHECK_SECONDS
            self.wall_offset = _wall_clock() - now
            self.refresh()
        if self.check_address:
            allowed = client is not None and self.address_cache.get(client)
            if allowed is None:
                allowed = self._address_allowed(client)
            if not allowed:
                return None if self._is_portal(secret) else self.address_denial
        if self.verifier is not None:
            denial = self.verifier.check(bearer, now + self.wall_offset)
            return None if denial is None or self._is_portal(secret) else denial
        if not self.check_keys:
            return None
        if query and any(
            name.lower() in QUERY_KEY_NAMES
            for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        ):
            return QUERY_KEY
        if not secret:
            return MISSING_KEY
        key = self.known_keys.get(secret)
        if key is None:
            key = self._look_up(secret)
            if key is None:
                return None if self._is_portal(secret) else UNKNOWN_KEY
        if key.revoked:
            return REVOKED_KEY
        if key.expires_at is not None and key.expires_at <= now + self.wall_offset:
            return EXPIRED_KEY
        return None

    def _is_portal(self, secret: bytes | None) -> bool:
        """Whether `secret` is this process's portal key (see the module's docstring)."""
        return bool(secret and self.portal_key and hmac.compare_digest(secret, self.portal_key))

    def _look_up(self, secret: bytes) -> Key | None:
        """Find the key record by prefix and constant-time hash comparison; remember hits."""
        digest = hashlib.sha256(secret).hexdigest()
        for key in self.policy.keys.get(secret[:KEY_PREFIX_LENGTH].decode("latin-1"), ()):
            if hmac.compare_digest(digest, key.hash):
                # Only keys that exist are remembered, so unknown keys cannot flood this map.
                if len(self.known_keys) >= MAX_CACHED_KEYS:
                    self.known_keys.clear()
                self.known_keys[secret] = key
                return key
        return None

    def _address_allowed(self, host: str) -> bool:
        allowed = self.address_cache.get(host)
        if allowed is None:
            try:
                address = ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                return False
            if address.version == 6 and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            allowed = any(address in network for network in self.policy.networks)
            if len(self.address_cache) >= MAX_CACHED_ADDRESSES:
                self.address_cache.clear()
            self.address_cache[host] = allowed
        return allowed
