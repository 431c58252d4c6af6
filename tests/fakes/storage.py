"""A fake Cloud Storage JSON API: objects (metadata, multipart and resumable uploads, media downloads)
and bucket IAM.

It answers like GCS: `ifGenerationMatch=0` on an existing object is 412 conditionNotMet; object
metadata carries `size`, `generation`, `md5Hash`, `crc32c` (base64, big-endian) and `mediaLink` so
the client's checksum checks pass; a bucket IAM `PUT` with a stale `etag` is 412 too.

Media downloads (`GET /download/storage/v1/b/<bucket>/o/<object>?alt=media`, which the client
uses, or `GET /storage/v1/b/<bucket>/o/<object>?alt=media`) answer the object's bytes with GCS's
headers (`x-goog-hash: crc32c=...,md5=...`, `x-goog-generation`, `x-goog-stored-content-length`,
...), honour `generation`, `ifGenerationMatch` and a `Range` header (206, or 416 past the end),
and answer errors as GCS does for media: the status with a plain-text reason
(`No such object: <bucket>/<object>`). They are recorded and `fail_next` applies to them like any call.

`GET /storage/v1/b/<bucket>/iam/testPermissions?permissions=...` answers the asked permissions the
caller holds (`self.permissions`); `storage.buckets.list` and `storage.buckets.create` are project
permissions, refused with 400 as GCS does. `drop_bucket` makes the bucket not exist (a fresh project).
Grants are told to the project (tests.fakes.project), which holds them back for a while.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, quote, unquote, urlsplit

import google_crc32c

from tests.fakes.grpc_server import next_number
from tests.fakes.permissions import Permissions
from tests.fakes.rest_server import HttpError, Request, RestFake, route

BUCKET = r"/storage/v1/b/(?P<bucket>[^/]+)"
UPLOAD = r"/upload/storage/v1/b/(?P<bucket>[^/]+)/o"
MEDIA = re.compile(r"^(?P<download>/download)?/storage/v1/b/(?P<bucket>[^/]+)/o/(?P<name>.+)$")


class StorageFake(RestFake):
    api = "storage.googleapis.com"

    def __init__(self, buckets: tuple[str, ...] = ("portal-artifacts",)):
        self.bucket_names = buckets
        self.permissions = Permissions()
        super().__init__()
        self.reset_state()

    def reset_state(self) -> None:
        self.permissions.reset()
        self.objects: dict[tuple[str, str], dict] = {}
        self.data: dict[tuple[str, str], bytes] = {}
        self.policies: dict[str, dict] = {}  # the buckets that exist, with their IAM policy
        for bucket in self.bucket_names:
            self.add_bucket(bucket)
        self._sessions: dict[str, dict] = {}

    def drop_bucket(self, bucket: str) -> None:
        """The bucket does not exist (test setup)."""
        with self.lock:
            del self.policies[bucket]

    def add_bucket(self, bucket: str) -> None:
        """The bucket exists, empty, with no IAM bindings (test setup)."""
        with self.lock:
            self.policies[bucket] = {"version": 1, "etag": "CAE=", "bindings": []}

    def put(self, bucket: str, name: str, data: bytes) -> dict:
        """Store an object directly (test setup)."""
        with self.lock:
            return self._store(bucket, name, data, {})

    # --- objects -----------------------------------------------------------------------------

    def _bucket(self, request: Request) -> str:
        bucket = request.params["bucket"]
        if bucket not in self.policies:
            raise HttpError(404, "The specified bucket does not exist.")
        return bucket

    @route("GET", BUCKET)
    def get_bucket(self, request: Request):
        bucket = self._bucket(request)
        return 200, {
            "kind": "storage#bucket",
            "name": bucket,
            "projectNumber": "123456789012",
            "location": "US",
        }

    @route("GET", BUCKET + r"/o/(?P<name>.+)")
    def get_object(self, request: Request):
        bucket = self._bucket(request)
        meta = self.objects.get((bucket, request.params["name"]))
        if meta is None:
            raise HttpError(404, f"No such object: {bucket}/{request.params['name']}")
        return 200, meta

    @route("DELETE", BUCKET + r"/o/(?P<name>.+)")
    def delete_object(self, request: Request):
        bucket = self._bucket(request)
        key = (bucket, request.params["name"])
        if key not in self.objects:
            raise HttpError(404, f"No such object: {bucket}/{request.params['name']}")
        del self.objects[key]
        del self.data[key]
        return 204, None

    # --- media downloads ---------------------------------------------------------------------

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        # Media is bytes, not JSON: answered here; everything else goes through the JSON routes.
        parts = urlsplit(handler.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        match = MEDIA.match(parts.path)
        if (
            handler.command != "GET"
            or match is None
            or (not match["download"] and query.get("alt") != "media")
        ):
            super()._dispatch(handler)
            return
        request = Request(
            method="GET",
            path=unquote(parts.path),
            query=query,
            headers={key.lower(): value for key, value in handler.headers.items()},
            body=b"",
            params={key: unquote(value) for key, value in match.groupdict(default="").items()},
        )
        dropped, failure = self._record(handler, f"GET {request.path}", request)
        if dropped:
            return
        try:
            if failure is not None:
                raise HttpError(failure.status, failure.message, reason=failure.reason)
            with self.lock:
                status, data, headers = self._media(request)
        except HttpError as exc:
            status, data = exc.status, exc.message.encode()
            headers = {"Content-Type": "text/plain; charset=utf-8"}
        self._send(handler, status, data, headers)

    def _media(self, request: Request) -> tuple[int, bytes, dict]:
        bucket, name = self._bucket(request), request.params["name"]
        meta = self.objects.get((bucket, name))
        wanted = request.query.get("generation")
        if meta is None or (wanted is not None and wanted != meta["generation"]):
            raise HttpError(404, f"No such object: {bucket}/{name}")
        self._check_preconditions(bucket, name, request.query)
        data = self.data[(bucket, name)]
        headers = {
            "Content-Type": meta["contentType"],
            "ETag": f'"{meta["md5Hash"]}"',
            "x-goog-generation": meta["generation"],
            "x-goog-metageneration": meta["metageneration"],
            "x-goog-hash": f"crc32c={meta['crc32c']},md5={meta['md5Hash']}",
            "x-goog-stored-content-encoding": "identity",
            "x-goog-stored-content-length": meta["size"],
            "Accept-Ranges": "bytes",
        }
        spec = request.headers.get("range", "")
        if not spec.startswith("bytes="):
            return 200, data, headers
        first, _, last = spec.removeprefix("bytes=").partition("-")
        if first:
            start, end = int(first), min(int(last), len(data) - 1) if last else len(data) - 1
        else:  # "bytes=-N": the last N bytes
            start, end = max(len(data) - int(last), 0), len(data) - 1
        if start >= len(data) or start > end:
            plain = {"Content-Type": "text/plain; charset=utf-8", "Content-Range": f"bytes */{len(data)}"}
            return 416, b"The requested range cannot be satisfied.", plain
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return 206, data[start : end + 1], headers

    @route("POST", UPLOAD)
    def upload(self, request: Request):
        bucket = self._bucket(request)
        kind = request.query.get("uploadType")
        if kind == "multipart":
            metadata, data = _parse_multipart(request)
            name = metadata.get("name") or request.query.get("name")
            self._check_preconditions(bucket, name, request.query)
            return 200, self._store(bucket, name, data, metadata)
        if kind == "resumable":
            metadata = request.json()
            name = metadata.get("name") or request.query.get("name")
            self._check_preconditions(bucket, name, request.query)
            upload_id = uuid.uuid4().hex
            self._sessions[upload_id] = {
                "bucket": bucket,
                "name": name,
                "metadata": metadata,
                "data": b"",
                "query": dict(request.query),
            }
            location = (
                f"{self.endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=resumable&upload_id={upload_id}"
            )
            return 200, None, {"Location": location}
        raise HttpError(400, f"Unsupported uploadType {kind!r}.")

    @route("PUT", UPLOAD)
    def upload_chunk(self, request: Request):
        session = self._sessions.get(request.query.get("upload_id", ""))
        if session is None:
            raise HttpError(404, "No such upload session.")
        content_range = request.headers.get("content-range", "")
        # "bytes 0-99/200", "bytes 100-199/*" or "bytes */200"
        spec, _, total = content_range.removeprefix("bytes ").partition("/")
        if spec != "*":
            start = int(spec.split("-")[0])
            if start != len(session["data"]):
                raise HttpError(400, "Chunk does not start where the last one ended.")
            session["data"] += request.body
        if total != "*" and len(session["data"]) == int(total):
            del self._sessions[request.query["upload_id"]]
            self._check_preconditions(session["bucket"], session["name"], session["query"])
            return 200, self._store(session["bucket"], session["name"], session["data"], session["metadata"])
        headers = {"Range": f"bytes=0-{len(session['data']) - 1}"} if session["data"] else {}
        return 308, None, headers

    def _check_preconditions(self, bucket: str, name: str, query: dict) -> None:
        if not name:
            raise HttpError(400, "Object name is required.", reason="required")
        wanted = query.get("ifGenerationMatch")
        if wanted is None:
            return
        current = self.objects.get((bucket, name))
        generation = current["generation"] if current else "0"
        if wanted != generation:
            raise HttpError(412, "At least one of the pre-conditions you specified did not hold.")

    def _store(self, bucket: str, name: str, data: bytes, metadata: dict) -> dict:
        crc = google_crc32c.Checksum(data).digest()
        meta = {
            "kind": "storage#object",
            "id": f"{bucket}/{name}/{next_number()}",
            "name": name,
            "bucket": bucket,
            "generation": str(next_number()),
            "metageneration": "1",
            "contentType": metadata.get("contentType", "application/octet-stream"),
            "size": str(len(data)),
            "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(),
            "crc32c": base64.b64encode(crc).decode(),
            "metadata": metadata.get("metadata", {}),
        }
        meta["mediaLink"] = (
            f"{self.endpoint}/download/storage/v1/b/{bucket}/o/{quote(name, safe='')}"
            f"?generation={meta['generation']}&alt=media"
        )
        self.objects[(bucket, name)] = meta
        self.data[(bucket, name)] = data
        return meta

    # --- bucket IAM --------------------------------------------------------------------------

    @route("GET", BUCKET + r"/iam")
    def get_iam(self, request: Request):
        bucket = self._bucket(request)
        return 200, {
            "kind": "storage#policy",
            "resourceId": f"projects/_/buckets/{bucket}",
            **self.policies[bucket],
        }

    @route("GET", BUCKET + r"/iam/testPermissions")
    def test_permissions(self, request: Request):
        bucket = self._bucket(request)
        asked = request.repeated.get("permissions", [])
        if not asked:
            raise HttpError(400, "Required parameter: permissions", reason="required")
        project_wide = {"storage.buckets.list", "storage.buckets.create"} & set(asked)
        if project_wide:
            raise HttpError(400, f"{sorted(project_wide)[0]} applies to projects, not to bucket {bucket}.")
        held = self.permissions.held(asked)
        return 200, {"kind": "storage#testIamPermissionsResponse", "permissions": held}

    @route("PUT", BUCKET + r"/iam")
    def set_iam(self, request: Request):
        bucket = self._bucket(request)
        body = request.json()
        current = self.policies[bucket]
        if body.get("etag") and body["etag"] != current["etag"]:
            raise HttpError(412, "At least one of the pre-conditions you specified did not hold.")
        for binding in body.get("bindings", []):
            if not binding.get("role", "").startswith("roles/"):
                raise HttpError(400, f"Role {binding.get('role')!r} is not valid.", reason="invalid")
        policy = {
            "version": body.get("version", 1),
            "etag": base64.b64encode(f"etag{next_number()}".encode()).decode(),
            "bindings": [
                {"role": binding["role"], "members": sorted(set(binding.get("members", [])))}
                for binding in body.get("bindings", [])
                if binding.get("members")
            ],
        }
        self.project.grants_changed(bucket, _members(current), _members(policy))
        self.policies[bucket] = policy
        return 200, {"kind": "storage#policy", "resourceId": f"projects/_/buckets/{bucket}", **policy}


def _members(policy: dict) -> set[str]:
    return {member for binding in policy["bindings"] for member in binding["members"]}


def _parse_multipart(request: Request) -> tuple[dict, bytes]:
    import json

    content_type = request.headers.get("content-type", "")
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    parts = request.body.split(b"--" + boundary)
    sections = [part for part in parts if part not in (b"", b"--", b"--\r\n", b"\r\n")]
    meta_part, data_part = sections[0], sections[1]
    _, meta = meta_part.split(b"\r\n\r\n", 1)
    _, data = data_part.split(b"\r\n\r\n", 1)
    return json.loads(meta.strip()), data.removesuffix(b"\r\n")
