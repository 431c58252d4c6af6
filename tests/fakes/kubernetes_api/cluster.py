"""The fake cluster's state and the API server's verbs on it (create, read, list, replace, patch,
delete), independent of HTTP.

What the API server does and the fake follows:

- Every object gets `uid`, `creationTimestamp` and a `resourceVersion` from one cluster-wide
  counter; Deployments, ReplicaSets and HPAs a `generation`, bumped when the spec (for a
  Deployment, also the annotations) changes. A write that changes nothing keeps the resourceVersion.
- PUT or PATCH carrying a `metadata.resourceVersion` other than the stored one is 409 Conflict; PUT
  without one is an unconditional update. PUT and PATCH of the main resource leave `status` alone
  (it is written through `/status`); a PUT that leaves out a Service's clusterIP keeps the
  allocated one.
- Create of a taken name is 409 AlreadyExists; anything missing (the object or its namespace) is
  404 NotFound; `dryRun=All` validates and answers without storing.
- Delete cascades to owned objects (a Deployment's ReplicaSets, their Pods) unless
  `propagationPolicy: Orphan`, which leaves them with their owner reference removed; a namespace's
  delete takes everything in it. Delete preconditions (`uid`, `resourceVersion`) are checked.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import yaml

from tests.fakes.kubernetes_api import patching
from tests.fakes.kubernetes_api.kinds import BY_KIND, Kind
from tests.fakes.kubernetes_api.selectors import field_selector, label_selector
from tests.fakes.kubernetes_api.status import KubeError, already_exists, bad_request, conflict, not_found
from tests.fakes.kubernetes_api.times import timestamp
from tests.fakes.kubernetes_api.validation import validate
from tests.fakes.kubernetes_api.workloads import Workloads

#: The fake clock's start, when no clock is given: 2027-01-15T08:00:00Z.
EPOCH = 1_800_000_000.0
#: Kinds whose `status` is written only through the `/status` subresource.
STATUS_SUBRESOURCE = {"Deployment", "ReplicaSet", "HorizontalPodAutoscaler", "Service", "Pod", "Namespace"}
GENERATION = {"Deployment", "ReplicaSet", "HorizontalPodAutoscaler"}
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}

Key = tuple[str, str, str]  # (kind, namespace or "", name)


class Cluster:
    """Objects by (kind, namespace, name), the resourceVersion counter and the clock.

    `clock` (seconds) is, unless a test sets its own, a fake one that moves `seconds_per_poll`
    each time a client reads a Deployment: rollouts and progress deadlines move with the client's
    polls, never with wall time.
    """

    def __init__(self, namespace: str = "models"):
        self.lock = threading.RLock()
        self.default_namespace = namespace
        self.clock: Callable[[], float] | None = None
        self.reset()

    def reset(self) -> None:
        with self.lock:
            if getattr(self, "workloads", None) is not None and self.workloads.live is not None:
                self.workloads.live.stop_all()
            self.objects: dict[Key, dict] = {}
            self.resource_version = 1000
            self.polls = 0
            self.seconds_per_poll = 60.0
            self.clock = None
            self.warnings: list[str] = []  # every Warning header sent (unknown fields dropped)
            self.workloads = Workloads(self)
            self.create(
                BY_KIND["Namespace"],
                "",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.default_namespace}},
            )

    # --- time ------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock() if self.clock is not None else EPOCH + self.polls * self.seconds_per_poll

    def stamp(self) -> str:
        return timestamp(self.now())

    # --- storage ---------------------------------------------------------------------------

    @staticmethod
    def key(kind: Kind, namespace: str, name: str) -> Key:
        return (kind.kind, namespace if kind.namespaced else "", name)

    def next_version(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)

    def put(self, kind: Kind, obj: dict) -> dict:
        """Store `obj` under a new resourceVersion (the controllers' writes come through here too)."""
        meta = obj["metadata"]
        meta["resourceVersion"] = self.next_version()
        self.objects[self.key(kind, meta.get("namespace", ""), meta["name"])] = obj
        return obj

    def stored(self, kind: Kind, namespace: str, name: str) -> dict:
        obj = self.objects.get(self.key(kind, namespace, name))
        if obj is None:
            raise not_found(kind.plural, kind.group, name)
        return obj

    def find(self, kind: str, namespace: str | None = None) -> list[dict]:
        """The stored objects of `kind` (in `namespace`, or all of them), by name."""
        return [
            obj
            for (held, ns, _), obj in sorted(self.objects.items())
            if held == kind and (namespace is None or ns == namespace)
        ]

    def _check_namespace(self, kind: Kind, namespace: str) -> None:
        if kind.namespaced and ("Namespace", "", namespace) not in self.objects:
            raise not_found("namespaces", "", namespace)

    def new_meta(self, kind: Kind, namespace: str, meta: dict) -> dict:
        meta = dict(meta)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=self.stamp())
        if kind.namespaced:
            meta["namespace"] = namespace
        if kind.kind in GENERATION:
            meta["generation"] = 1
        for field in ("resourceVersion", "deletionTimestamp", "managedFields"):
            meta.pop(field, None)
        return meta

    # --- verbs -----------------------------------------------------------------------------

    def create(
        self,
        kind: Kind,
        namespace: str,
        body: Any,
        *,
        field_validation: str | None = None,
        dry_run: bool = False,
    ) -> dict:
        with self.lock:
            body = _object(body)
            given = (body.get("metadata") or {}).get("namespace")
            if kind.namespaced and given and given != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            self._check_namespace(kind, namespace)
            meta = body.get("metadata") or {}
            if meta.get("resourceVersion"):
                raise KubeError("InternalError", "resourceVersion should not be set on objects to be created")
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            obj, warnings = validate(kind, body, field_validation=field_validation)
            self.warnings += warnings
            name = obj["metadata"]["name"]
            if self.key(kind, namespace, name) in self.objects:
                raise already_exists(kind.plural, kind.group, name)
            obj["metadata"] = self.new_meta(kind, namespace, obj["metadata"])
            if kind.kind in STATUS_SUBRESOURCE:
                obj["status"] = self.workloads.initial_status(kind.kind, obj)
            if kind.kind == "Service":
                self.workloads.allocate(obj)
            if dry_run:
                return copy.deepcopy(obj)
            return copy.deepcopy(self.put(kind, obj))

    def read(self, kind: Kind, namespace: str, name: str) -> dict:
        with self.lock:
            self._check_namespace(kind, namespace)
            obj = self.stored(kind, namespace, name)
            self.workloads.observe(kind.kind, [obj])
            return copy.deepcopy(self.stored(kind, namespace, name))

    def list(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        labels: str | None = None,
        fields: str | None = None,
        limit: int | None = None,
        token: str | None = None,
    ) -> dict:
        """The matching objects (without kind and apiVersion, as in a real list), `limit` at a time:
        a page that leaves some out carries `continue` (give it back as `token`) and how many are left."""
        with self.lock:
            if namespace is not None:
                self._check_namespace(kind, namespace)
            wanted_labels, wanted_fields = label_selector(labels), field_selector(fields)
            self.workloads.observe(kind.kind, self.find(kind.kind, namespace))
            after = _continue_from(token) if token else ""
            matching = [
                obj
                for obj in self.find(kind.kind, namespace)
                if wanted_labels(obj) and wanted_fields(obj) and _position(obj) > after
            ]
            page = matching[:limit] if limit else matching
            meta: dict[str, Any] = {"resourceVersion": str(self.resource_version)}
            if len(page) < len(matching):
                start = json.dumps(
                    {"v": "meta.k8s.io/v1", "rv": self.resource_version, "start": _position(page[-1])}
                )
                meta.update(
                    {
                        "continue": base64.b64encode(start.encode()).decode(),
                        "remainingItemCount": len(matching) - len(page),
                    }
                )
            items = [
                {key: value for key, value in copy.deepcopy(obj).items() if key not in ("kind", "apiVersion")}
                for obj in page
            ]
            return {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.api_version,
                "metadata": meta,
                "items": items,
            }

    def replace(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        body: Any,
        *,
        field_validation: str | None = None,
        dry_run: bool = False,
        subresource: str = "",
    ) -> dict:
        with self.lock:
            body = _object(body)
            self._check_namespace(kind, namespace)
            old = self.stored(kind, namespace, name)
            if (body.get("metadata") or {}).get("name", name) != name:
                raise bad_request("the name of the object does not match the name on the URL")
            version = (body.get("metadata") or {}).get("resourceVersion")
            if version and version != old["metadata"]["resourceVersion"]:
                raise conflict(kind.plural, kind.group, name)
            return self._update(
                kind, old, body, field_validation=field_validation, dry_run=dry_run, subresource=subresource
            )

    def patch(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        raw: bytes,
        content_type: str,
        *,
        field_manager: str | None = None,
        field_validation: str | None = None,
        dry_run: bool = False,
        subresource: str = "",
    ) -> dict:
        with self.lock:
            patch_type = PATCH_TYPES.get(content_type.split(";")[0].strip())
            if patch_type is None:
                raise KubeError(
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - "
                    f"accepted media types include: {', '.join(PATCH_TYPES)}",
                )
            self._check_namespace(kind, namespace)
            if patch_type == "apply":
                if not field_manager:
                    raise KubeError(
                        "Invalid",
                        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required '
                        "value: is required for apply patch",
                    )
                applied = _object(yaml.safe_load(raw or b"{}"))
                if self.key(kind, namespace, name) not in self.objects:
                    return self.create(
                        kind, namespace, applied, field_validation=field_validation, dry_run=dry_run
                    )
            old = self.stored(kind, namespace, name)
            current = copy.deepcopy(old)
            try:
                document = json.loads(raw or b"{}") if patch_type != "apply" else applied
            except ValueError as error:
                raise bad_request(f"error decoding patch: {error}") from None
            if patch_type == "json":
                patched = patching.json_patch(current, document)
            elif patch_type == "merge":
                patched = patching.merge_patch(current, _object(document))
            else:
                patched = patching.strategic_merge_patch(current, _object(document))
            version = (patched.get("metadata") or {}).get("resourceVersion")
            if version and version != old["metadata"]["resourceVersion"]:
                raise conflict(kind.plural, kind.group, name)
            return self._update(
                kind,
                old,
                patched,
                field_validation=field_validation,
                dry_run=dry_run,
                subresource=subresource,
            )

    def _update(
        self,
        kind: Kind,
        old: dict,
        body: dict,
        *,
        field_validation: str | None,
        dry_run: bool,
        subresource: str,
    ) -> dict:
        meta = old["metadata"]
        body.setdefault("metadata", {})
        body.setdefault("kind", kind.kind)
        body.setdefault("apiVersion", kind.api_version)
        if subresource == "status":
            obj = copy.deepcopy(old)
            obj["status"] = body.get("status", {})
            return copy.deepcopy(self.put(kind, obj)) if not dry_run else obj
        obj, warnings = validate(kind, body, old, field_validation=field_validation)
        self.warnings += warnings
        kept = {
            field: meta[field]
            for field in ("uid", "creationTimestamp", "namespace", "generation")
            if field in meta
        }
        obj["metadata"] = {**obj["metadata"], **kept, "name": meta["name"]}
        obj["metadata"]["resourceVersion"] = meta["resourceVersion"]
        if kind.kind in STATUS_SUBRESOURCE:
            obj["status"] = copy.deepcopy(old.get("status", {}))
        if kind.kind == "Service":
            self.workloads.keep_allocated(obj, old)
        if kind.kind in GENERATION and (
            obj.get("spec") != old.get("spec")
            or (kind.kind == "Deployment" and obj["metadata"].get("annotations") != meta.get("annotations"))
        ):
            obj["metadata"]["generation"] = meta.get("generation", 1) + 1
        if obj == old or dry_run:
            return copy.deepcopy(obj)
        return copy.deepcopy(self.put(kind, obj))

    def delete(
        self, kind: Kind, namespace: str, name: str, options: dict | None = None, *, dry_run: bool = False
    ) -> dict:
        with self.lock:
            options = options or {}
            self._check_namespace(kind, namespace)
            obj = self.stored(kind, namespace, name)
            preconditions = options.get("preconditions") or {}
            for field in ("uid", "resourceVersion"):
                if preconditions.get(field) and preconditions[field] != obj["metadata"][field]:
                    raise KubeError(
                        "Conflict",
                        f'Operation cannot be fulfilled on {kind.plural} "{name}": Precondition failed: '
                        f"{field}: {preconditions[field]}, {field}: {obj['metadata'][field]}",
                    )
            if not dry_run:
                self.remove(obj, orphan=options.get("propagationPolicy") == "Orphan")
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": name,
                    "group": kind.group,
                    "kind": kind.plural,
                    "uid": obj["metadata"]["uid"],
                },
            }

    def remove(self, obj: dict, *, orphan: bool = False) -> None:
        """Delete `obj` and, unless orphaned, what it owns, as the garbage collector would."""
        meta = obj["metadata"]
        self.objects.pop(self.key(BY_KIND[obj["kind"]], meta.get("namespace", ""), meta["name"]), None)
        if obj["kind"] == "Pod" and self.workloads.live is not None:
            self.workloads.live.stop(meta["uid"])
        for child in list(self.objects.values()):
            child_meta = child["metadata"]
            owners = child_meta.get("ownerReferences") or []
            if obj["kind"] == "Namespace" and child_meta.get("namespace") == meta["name"]:
                self.remove(child)
            elif any(owner["uid"] == meta["uid"] for owner in owners):
                if orphan:
                    child_meta["ownerReferences"] = [owner for owner in owners if owner["uid"] != meta["uid"]]
                    self.put(BY_KIND[child["kind"]], child)
                else:
                    self.remove(child)


def _position(obj: dict) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def _continue_from(token: str) -> str:
    try:
        return json.loads(base64.b64decode(token, validate=True))["start"]
    except (ValueError, KeyError, TypeError):
        raise bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        ) from None


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise bad_request(f"the body of the request must be a JSON object, not {type(body).__name__}")
    return body
