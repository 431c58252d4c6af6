"""The fake API server's HTTP face: the REST paths of each kind, their verbs and query parameters.

    {prefix}/namespaces/{namespace}/{plural}[/{name}[/status|/scale]]    namespaced kinds
    /api/v1/namespaces/{namespace}/pods/{name}/log                        a pod's log (logs.py)
    {prefix}/{plural}                                                     a list across namespaces
    /api/v1/namespaces[/{name}]                                           namespaces

where prefix is /api/v1 or /apis/{group}/{version}. Lists take `labelSelector` and `fieldSelector`;
writes take `fieldValidation`, `dryRun=All` and (apply) `fieldManager`; delete takes
`propagationPolicy` as a parameter or in its DeleteOptions body. Every call needs the bearer token
of the kubeconfig (401 Unauthorized without it). Watches are not served (400).
"""

from __future__ import annotations

import json

from tests.fakes.kubernetes_api import patching
from tests.fakes.kubernetes_api.cluster import Cluster
from tests.fakes.kubernetes_api.kinds import BY_KIND, BY_PATH, READ_ONLY, Kind
from tests.fakes.kubernetes_api.logs import container_of, pod_log
from tests.fakes.kubernetes_api.status import KubeError, bad_request
from tests.fakes.rest_server import HttpError, Request, RestFake, route

TOKEN = "fake-kubernetes-token"
PREFIX = r"(?P<prefix>/api/v1|/apis/[^/]+/[^/]+)"
NAMESPACED = PREFIX + r"/namespaces/(?P<namespace>[^/]+)/(?P<plural>[^/]+)"
ONE = NAMESPACED + r"/(?P<name>[^/]+)"
SUB = ONE + r"/(?P<sub>status|scale)"
NAMESPACE = r"/api/v1/namespaces/(?P<name>[^/]+)"
VERSION = {"major": "1", "minor": "37", "gitVersion": "v1.37.0", "platform": "linux/amd64"}


class KubernetesApiFake(RestFake):
    def __init__(self, namespace: str = "models"):
        super().__init__()
        self.cluster = Cluster(namespace)
        self.warned = 0  # how many of the cluster's warnings went out in a Warning header

    def reset_state(self) -> None:
        self.cluster.reset()
        self.warned = 0

    # --- helpers ---------------------------------------------------------------------------

    def _route(self, request: Request, *, raw_path: str):
        """Any path or verb the fake does not serve is the API server's 404, as a Status."""
        try:
            return super()._route(request, raw_path=raw_path)
        except KubeError:
            raise
        except HttpError as error:
            if error.status != 404:
                raise
            raise KubeError("NotFound", "the server could not find the requested resource") from None

    def _kind(self, request: Request) -> Kind:
        """The namespaced kind the path names."""
        kind = BY_PATH.get((request.params["prefix"], request.params["plural"]))
        if kind is None or not kind.namespaced:
            raise KubeError(
                "NotFound",
                "the server could not find the requested resource",
                details={"kind": request.params["plural"]},
            )
        return kind

    def _authorize(self, request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            raise KubeError("Unauthorized", "Unauthorized", code=401)
        if request.query.get("watch") in ("true", "1"):
            raise bad_request("the fake Kubernetes API server does not serve watches")

    def _answer(self, obj: dict, status: int = 200) -> tuple:
        """The object, with a Warning header for each unknown field the write dropped."""
        warnings = self.cluster.warnings[self.warned :]
        self.warned = len(self.cluster.warnings)
        headers = (
            {"Warning": ", ".join(f'299 - "{json.dumps(w)[1:-1]}"' for w in warnings)} if warnings else {}
        )
        return status, obj, headers

    def _write_options(self, request: Request) -> dict:
        dry_run = request.query.get("dryRun")
        if dry_run not in (None, "All"):
            raise bad_request(f'dryRun: Unsupported value: "{dry_run}": supported values: "All"')
        return {"field_validation": request.query.get("fieldValidation"), "dry_run": dry_run == "All"}

    def _writable(self, kind: Kind) -> None:
        if kind.kind in READ_ONLY:
            raise KubeError(
                "MethodNotAllowed",
                f"the fake Kubernetes API server makes {kind.plural} itself "
                "(through its controllers); it does not take them from clients",
            )

    # --- namespaced kinds --------------------------------------------------------------------

    @route("GET", NAMESPACED)
    def list_namespaced(self, request: Request):
        self._authorize(request)
        kind = self._kind(request)
        return 200, self.cluster.list(kind, request.params["namespace"], **_list_options(request))

    @route("GET", PREFIX + r"/(?P<plural>[^/]+)")
    def list_everywhere(self, request: Request):
        """A list across namespaces, and the list of namespaces."""
        self._authorize(request)
        kind = BY_PATH.get((request.params["prefix"], request.params["plural"]))
        if kind is None:
            raise KubeError("NotFound", "the server could not find the requested resource")
        return 200, self.cluster.list(kind, None, **_list_options(request))

    @route("POST", NAMESPACED)
    def create_namespaced(self, request: Request):
        self._authorize(request)
        kind = self._kind(request)
        self._writable(kind)
        created = self.cluster.create(
            kind, request.params["namespace"], _body(request), **self._write_options(request)
        )
        return self._answer(created, 201)

    @route("GET", ONE)
    def read_namespaced(self, request: Request):
        self._authorize(request)
        return 200, self.cluster.read(
            self._kind(request), request.params["namespace"], request.params["name"]
        )

    @route("PUT", ONE)
    def replace_namespaced(self, request: Request):
        self._authorize(request)
        kind = self._kind(request)
        self._writable(kind)
        replaced = self.cluster.replace(
            kind,
            request.params["namespace"],
            request.params["name"],
            _body(request),
            **self._write_options(request),
        )
        return self._answer(replaced)

    @route("PATCH", ONE)
    def patch_namespaced(self, request: Request):
        self._authorize(request)
        kind = self._kind(request)
        self._writable(kind)
        return self._answer(self._patch(kind, request))

    @route("DELETE", ONE)
    def delete_namespaced(self, request: Request):
        self._authorize(request)
        kind = self._kind(request)
        options = _body(request) if request.body else {}
        if "propagationPolicy" in request.query:
            options["propagationPolicy"] = request.query["propagationPolicy"]
        return 200, self.cluster.delete(
            kind,
            request.params["namespace"],
            request.params["name"],
            options,
            dry_run=self._write_options(request)["dry_run"],
        )

    def _patch(self, kind: Kind, request: Request, subresource: str = "") -> dict:
        return self.cluster.patch(
            kind,
            request.params.get("namespace", ""),
            request.params["name"],
            request.body,
            request.headers.get("content-type", ""),
            field_manager=request.query.get("fieldManager"),
            subresource=subresource,
            **self._write_options(request),
        )

    # --- subresources --------------------------------------------------------------------------

    def _subresource_kind(self, request: Request) -> Kind:
        kind = self._kind(request)
        if request.params["sub"] == "scale" and kind.kind not in ("Deployment", "ReplicaSet"):
            raise KubeError("NotFound", "the server could not find the requested resource")
        return kind

    @route("GET", SUB)
    def read_subresource(self, request: Request):
        self._authorize(request)
        kind = self._subresource_kind(request)
        obj = self.cluster.read(kind, request.params["namespace"], request.params["name"])
        return 200, (obj if request.params["sub"] == "status" else _scale(obj))

    @route("PUT", SUB)
    def replace_subresource(self, request: Request):
        self._authorize(request)
        kind = self._subresource_kind(request)
        namespace, name = request.params["namespace"], request.params["name"]
        if request.params["sub"] == "status":
            return self._answer(
                self.cluster.replace(
                    kind,
                    namespace,
                    name,
                    _body(request),
                    subresource="status",
                    **self._write_options(request),
                )
            )
        scale = _body(request)
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        patch = {
            "metadata": {"resourceVersion": (scale.get("metadata") or {}).get("resourceVersion")},
            "spec": {"replicas": replicas},
        }
        if not patch["metadata"]["resourceVersion"]:
            del patch["metadata"]
        updated = self.cluster.patch(
            kind,
            namespace,
            name,
            json.dumps(patch).encode(),
            "application/merge-patch+json",
            **self._write_options(request),
        )
        return 200, _scale(updated)

    @route("PATCH", SUB)
    def patch_subresource(self, request: Request):
        self._authorize(request)
        kind = self._subresource_kind(request)
        if request.params["sub"] == "status":
            return self._answer(self._patch(kind, request, "status"))
        current = _scale(self.cluster.stored(kind, request.params["namespace"], request.params["name"]))
        content_type = request.headers.get("content-type", "").split(";")[0]
        document = json.loads(request.body or b"{}")
        patched = (
            patching.json_patch(current, document)
            if content_type == "application/json-patch+json"
            else patching.merge_patch(current, document)
        )
        request.body = json.dumps(patched).encode()
        return self.replace_subresource(request)

    @route("GET", NAMESPACED + r"/(?P<name>[^/]+)/log")
    def read_log(self, request: Request):
        self._authorize(request)
        kind = self._kind(request)
        if kind.kind != "Pod":
            raise KubeError("NotFound", "the server could not find the requested resource")
        pod = self.cluster.read(kind, request.params["namespace"], request.params["name"])
        container = container_of(pod, request.query.get("container"))
        lines = self.cluster.workloads.logs.get((pod["metadata"]["uid"], container), [])
        body = pod_log(pod, lines, request.query, self.cluster.now())
        return 200, body, {"Content-Type": "text/plain"}

    # --- namespaces --------------------------------------------------------------------------

    @route("POST", r"/api/v1/namespaces")
    def create_namespace(self, request: Request):
        self._authorize(request)
        return self._answer(
            self.cluster.create(BY_KIND["Namespace"], "", _body(request), **self._write_options(request)), 201
        )

    @route("GET", NAMESPACE)
    def read_namespace(self, request: Request):
        self._authorize(request)
        return 200, self.cluster.read(BY_KIND["Namespace"], "", request.params["name"])

    @route("PUT", NAMESPACE)
    def replace_namespace(self, request: Request):
        self._authorize(request)
        return self._answer(
            self.cluster.replace(
                BY_KIND["Namespace"],
                "",
                request.params["name"],
                _body(request),
                **self._write_options(request),
            )
        )

    @route("PATCH", NAMESPACE)
    def patch_namespace(self, request: Request):
        self._authorize(request)
        return self._answer(self._patch(BY_KIND["Namespace"], request))

    @route("DELETE", NAMESPACE)
    def delete_namespace(self, request: Request):
        self._authorize(request)
        return 200, self.cluster.delete(
            BY_KIND["Namespace"], "", request.params["name"], dry_run=self._write_options(request)["dry_run"]
        )

    @route("GET", r"/version")
    def version(self, request: Request):
        return 200, VERSION


def _list_options(request: Request) -> dict:
    limit = request.query.get("limit")
    if limit is not None and not limit.isdigit():
        raise bad_request(f'limit: Invalid value: "{limit}": must be a non-negative integer')
    return {
        "labels": request.query.get("labelSelector"),
        "fields": request.query.get("fieldSelector"),
        "limit": int(limit) if limit else None,
        "token": request.query.get("continue"),
    }


def _body(request: Request) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError as error:
        raise bad_request(f"couldn't get version/kind; json parse error: {error}") from None
    if not isinstance(body, dict):
        raise bad_request("the body of the request must be a JSON object")
    return body


def _scale(obj: dict) -> dict:
    """The autoscaling/v1 Scale of a Deployment or ReplicaSet."""
    meta = obj["metadata"]
    labels = (obj["spec"].get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            key: meta[key] for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
        },
        "spec": {"replicas": obj["spec"].get("replicas", 0)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{key}={value}" for key, value in sorted(labels.items())),
        },
    }
