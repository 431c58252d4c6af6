"""A fake API Keys API v2 (`google.api.apikeys.v2.ApiKeys`) over gRPC.

It holds to GOOGLE-APIS.md d.3: keys live in `projects/<number>/locations/global/keys/<id>` (the
project id is accepted in requests, the number comes back); `key_id` matches
`[a-z]([a-z0-9-]{0,61}[a-z0-9])?` and must not look like a UUID; `display_name` is at most 63
characters; the key string is only readable through GetKeyString; `allowed_ips` must be IP
addresses or CIDR blocks; Create, Update, Delete and Undelete are long-running operations with
top-level names (`operations/akmf...`); a deleted key is kept (and can be undeleted) for 30 days,
is hidden from ListKeys unless `show_deleted`, and deleting it again is NOT_FOUND.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import string
import uuid
from datetime import timedelta

import grpc
from google.cloud import api_keys_v2
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2, timestamp_pb2

from tests.fakes.grpc_server import FakeError, GrpcFake, already_exists, invalid, not_found, rpc

SERVICE = "google.api.apikeys.v2.ApiKeys"
KEY_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
UUID_LIKE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MUTABLE = {"display_name", "restrictions", "annotations"}
UNDELETE_DAYS = 30


def project_number(project: str) -> str:
    if project.isdigit():
        return project
    return str(int(hashlib.sha1(project.encode()).hexdigest(), 16) % 10**12).rjust(12, "1")


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


class ApiKeysFake(GrpcFake):
    api = "apikeys.googleapis.com"

    operation_prefix = "operations/akmf.p7-1234567890"

    def __init__(self):
        super().__init__()
        self.reset_state()

    def reset_state(self) -> None:
        self.page_size_cap = 300  # tests lower it to see paging
        self.keys: dict[str, api_keys_v2.Key] = {}
        self.strings: dict[str, str] = {}

    # --- helpers -----------------------------------------------------------------------------

    def _parent(self, parent: str) -> str:
        match = re.match(r"^projects/([^/]+)/locations/([^/]+)$", parent)
        if not match:
            raise invalid(f"Invalid parent {parent!r}.")
        if match.group(2) != "global":
            raise invalid(f"Location {match.group(2)!r} is not supported; API keys live in 'global'.")
        return f"projects/{project_number(match.group(1))}/locations/global"

    def _name(self, name: str) -> str:
        match = re.match(r"^(projects/[^/]+/locations/[^/]+)/keys/([^/]+)$", name)
        if not match:
            raise invalid(f"Invalid key name {name!r}.")
        return f"{self._parent(match.group(1))}/keys/{match.group(2)}"

    def _check_restrictions(self, restrictions: api_keys_v2.Restrictions) -> None:
        for ip in restrictions.server_key_restrictions.allowed_ips:
            try:
                ipaddress.ip_network(ip, strict=False)
            except ValueError:
                raise invalid(f"Invalid IP address or subnet in allowed_ips: {ip!r}.") from None
        for target in restrictions.api_targets:
            if not target.service:
                raise invalid("api_targets.service must not be empty.")

    def key(self, name: str) -> api_keys_v2.Key:
        with self.lock:
            return api_keys_v2.Key(self.keys[self._name(name)])

    def live_keys(self) -> list[api_keys_v2.Key]:
        with self.lock:
            return [api_keys_v2.Key(key) for key in self.keys.values() if not key.delete_time]

    def _op(self, key: api_keys_v2.Key) -> operations_pb2.Operation:
        return self.operation(response=api_keys_v2.Key(key, key_string=""), metadata=empty_pb2.Empty())

    # --- the API -----------------------------------------------------------------------------

    @rpc(SERVICE, "CreateKey", api_keys_v2.CreateKeyRequest, operations_pb2.Operation)
    def create_key(self, request, context):
        parent = self._parent(request.parent)
        key_id = request.key_id or str(uuid.uuid4())
        if request.key_id and (not KEY_ID.match(key_id) or UUID_LIKE.match(key_id)):
            raise invalid(
                f"key_id {key_id!r} must match [a-z]([a-z0-9-]{{0,61}}[a-z0-9])? and must not be a UUID."
            )
        if len(request.key.display_name) > 63:
            raise invalid("display_name must be at most 63 characters.")
        self._check_restrictions(request.key.restrictions)
        name = f"{parent}/keys/{key_id}"
        if name in self.keys:
            raise already_exists(f"Key {name} already exists.")
        key = api_keys_v2.Key(
            name=name,
            uid=str(uuid.uuid4()),
            display_name=request.key.display_name,
            annotations=request.key.annotations,
            restrictions=request.key.restrictions,
            create_time=_now(),
            update_time=_now(),
            etag=f'W/"{secrets.token_hex(8)}"',
        )
        self.keys[name] = key
        alphabet = string.ascii_letters + string.digits + "-_"
        self.strings[name] = "AIza" + "".join(secrets.choice(alphabet) for _ in range(35))
        return self._op(key)

    @rpc(SERVICE, "GetKey", api_keys_v2.GetKeyRequest, api_keys_v2.Key)
    def get_key(self, request, context):
        name = self._name(request.name)
        if name not in self.keys:
            raise not_found(f"Key {request.name}")
        return self.keys[name]

    @rpc(SERVICE, "GetKeyString", api_keys_v2.GetKeyStringRequest, api_keys_v2.GetKeyStringResponse)
    def get_key_string(self, request, context):
        name = self._name(request.name)
        key = self.keys.get(name)
        if key is None or key.delete_time:
            raise not_found(f"Key {request.name}")
        return api_keys_v2.GetKeyStringResponse(key_string=self.strings[name])

    @rpc(SERVICE, "ListKeys", api_keys_v2.ListKeysRequest, api_keys_v2.ListKeysResponse)
    def list_keys(self, request, context):
        parent = self._parent(request.parent)
        found = [
            key
            for name, key in sorted(self.keys.items())
            if name.startswith(parent + "/") and (request.show_deleted or not key.delete_time)
        ]
        size = min(request.page_size or self.page_size_cap, self.page_size_cap)
        start = int(request.page_token or 0)
        page = found[start : start + size]
        token = str(start + size) if start + size < len(found) else ""
        return api_keys_v2.ListKeysResponse(keys=page, next_page_token=token)

    @rpc(SERVICE, "UpdateKey", api_keys_v2.UpdateKeyRequest, operations_pb2.Operation)
    def update_key(self, request, context):
        name = self._name(request.key.name)
        key = self.keys.get(name)
        if key is None or key.delete_time:
            raise not_found(f"Key {request.key.name}")
        if request.key.etag and request.key.etag != key.etag:
            raise FakeError(grpc.StatusCode.ABORTED, "The etag does not match the key's current etag.")
        given = [field.name for field, _ in api_keys_v2.Key.pb(request.key).ListFields()]
        paths = list(request.update_mask.paths) or [name for name in given if name in MUTABLE]
        if paths == ["*"]:
            paths = sorted(MUTABLE)
        unknown = set(paths) - MUTABLE
        if unknown:
            raise invalid(f"update_mask names fields that cannot be updated: {', '.join(sorted(unknown))}.")
        if "restrictions" in paths:
            self._check_restrictions(request.key.restrictions)
        for path in paths:
            setattr(key, path, getattr(request.key, path))
        key.update_time = _now()
        key.etag = f'W/"{secrets.token_hex(8)}"'
        return self._op(key)

    @rpc(SERVICE, "DeleteKey", api_keys_v2.DeleteKeyRequest, operations_pb2.Operation)
    def delete_key(self, request, context):
        name = self._name(request.name)
        key = self.keys.get(name)
        if key is None or key.delete_time:
            raise not_found(f"Key {request.name}")
        if request.etag and request.etag != key.etag:
            raise FakeError(grpc.StatusCode.FAILED_PRECONDITION, "The etag does not match.")
        key.delete_time = _now()
        return self._op(key)

    @rpc(SERVICE, "UndeleteKey", api_keys_v2.UndeleteKeyRequest, operations_pb2.Operation)
    def undelete_key(self, request, context):
        name = self._name(request.name)
        key = self.keys.get(name)
        if key is None or not key.delete_time:
            raise not_found(f"Deleted key {request.name}")
        deleted = key.delete_time
        if _now().ToDatetime() - timedelta(days=UNDELETE_DAYS) > deleted.replace(tzinfo=None):
            raise not_found(f"Deleted key {request.name} (past the {UNDELETE_DAYS}-day window)")
        key.delete_time = None
        key.update_time = _now()
        return self._op(key)
