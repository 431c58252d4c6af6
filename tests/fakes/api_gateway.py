"""A fake API Gateway v1 (`google.cloud.apigateway.v1.ApiGatewayService`) over gRPC.

It holds to GOOGLE-APIS.md d.2: APIs (with a generated, immutable managed service), configs
(immutable; ids of at most 63 lowercase letters, digits and dashes, not starting with a dash) and
regional gateways that point at one config. Gateway ids have at most 49 characters ("Gateway ID
requirements", Deploying an API to a gateway); API ids and config ids at most 63. The quotas of
"Quotas and limits" hold: 50 APIs in a project, 100 API configs per API and 50 gateways per
region; a create past them is refused with RESOURCE_EXHAUSTED (the status Google gives an exhausted
quota), the limit named.
Every write is a long-running operation whose metadata is `OperationMetadata` and whose response
is the resource (Empty for deletes); a config whose OpenAPI document the gateway cannot take ends
in error with the reasons in `metadata.diagnostics`, as Google reports them. The document checks are
those the gateway enforces: Swagger 2.0 (or OpenAPI 3 with `x-google-api-management`), no port in
`host`, an `operationId` on every operation (unique), only local `#/definitions` references, whole
path segments in templates, `apiKey` security in a header or the query, no OR between an API key
and another scheme, and an `x-google-backend` with an http(s) address, a known
`path_translation` and a deadline of at most 3600 s.

Deletes are long-running operations too: the resource is DELETING until its operation completes,
then gone. An API config a gateway still points at is refused (FAILED_PRECONDITION), and so is an
API that still has configs ("All API configs belonging to the API will need to be deleted before
the API can be deleted", gcloud api-gateway apis delete); the API's managed service goes with it.
"""

from __future__ import annotations

import hashlib
import json
import re

import grpc
import yaml
from google.cloud import apigateway_v1 as gw
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2, timestamp_pb2

from tests.fakes.grpc_server import FakeError, GrpcFake, already_exists, invalid, not_found, rpc

SERVICE = "google.cloud.apigateway.v1.ApiGatewayService"
RESOURCE_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com$")
METHODS = {"get", "put", "post", "delete", "options", "head", "patch"}
MAX_APIS = 50  # per project
MAX_CONFIGS = 100  # per API
MAX_GATEWAYS = 50  # per region
MAX_GATEWAY_ID = 49


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _check_id(kind: str, value: str, longest: int = 63) -> None:
    if len(value) > longest:
        raise invalid(f"{kind} {value!r} is too long: it must be at most {longest} characters.")
    if not RESOURCE_ID.match(value):
        raise invalid(
            f"{kind} {value!r} is invalid: use lowercase letters, digits and dashes; it must not start "
            "or end with a dash."
        )


def quota_exhausted(limit: str, where: str) -> FakeError:
    return FakeError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"Quota exceeded: {where} already has the most allowed ({limit}); delete some or ask for more quota.",
    )


def document_problems(doc) -> list[str]:
    """What API Gateway would say about an OpenAPI document (empty when it takes it)."""
    if not isinstance(doc, dict):
        return ["The document is not a JSON or YAML object."]
    problems = []
    if str(doc.get("openapi", "")).startswith("3."):
        if "x-google-api-management" not in doc:
            problems.append("OpenAPI 3 documents need a root x-google-api-management extension.")
        return problems
    if doc.get("swagger") != "2.0":
        return ["The document must be Swagger 2.0 (swagger: '2.0') or OpenAPI 3.x."]
    for key in ("servers", "components", "openapi"):
        if key in doc:
            problems.append(f"'{key}' is not a Swagger 2.0 field.")
    if ":" in str(doc.get("host", "")):
        problems.append("Custom ports in 'host' are not supported.")
    definitions = doc.get("securityDefinitions") or {}
    for name, scheme in definitions.items():
        if scheme.get("type") == "apiKey" and (
            scheme.get("in") not in ("header", "query") or not scheme.get("name")
        ):
            problems.append(
                f"securityDefinitions.{name}: an apiKey needs a 'name' and 'in' of header or query."
            )
    problems += _security_problems(doc.get("security"), definitions, "security")
    problems += _backend_problems(doc.get("x-google-backend"), "x-google-backend")
    operation_ids = set()
    for path, item in (doc.get("paths") or {}).items():
        if not path.startswith("/"):
            problems.append(f"Path {path!r} must start with '/'.")
        for segment in path.split("/"):
            if "{" in segment and not re.fullmatch(r"\{[^{}]+\}", segment):
                problems.append(f"Path {path!r}: templates must span a whole segment ({segment!r}).")
        for method, operation in (item or {}).items():
            if method not in METHODS:
                continue
            where = f"paths.{path}.{method}"
            operation_id = operation.get("operationId")
            if not operation_id:
                problems.append(f"{where}: operation does not have the required 'operationId' field.")
            elif operation_id in operation_ids:
                problems.append(f"{where}: operationId {operation_id!r} is not unique.")
            operation_ids.add(operation_id)
            bodies = [p for p in operation.get("parameters", []) if p.get("in") == "body"]
            if len(bodies) > 1:
                problems.append(f"{where}: at most one body parameter.")
            problems += _security_problems(operation.get("security"), definitions, where)
            problems += _backend_problems(operation.get("x-google-backend"), f"{where}.x-google-backend")
    problems += _reference_problems(doc, doc.get("definitions") or {})
    return problems


def _security_problems(requirements, definitions: dict, where: str) -> list[str]:
    problems = []
    if requirements is None:
        return problems
    api_keys = {name for name, scheme in definitions.items() if scheme.get("type") == "apiKey"}
    names = [name for requirement in requirements for name in requirement]
    for name in names:
        if name not in definitions:
            problems.append(f"{where}: security requirement {name!r} is not in securityDefinitions.")
    alternatives = [set(requirement) for requirement in requirements]
    if len(alternatives) > 1 and any(alt & api_keys for alt in alternatives):
        problems.append(f"{where}: an API key cannot be one of several alternatives (no logical OR).")
    return problems


def _backend_problems(backend, where: str) -> list[str]:
    if backend is None:
        return []
    problems = []
    address = str(backend.get("address", ""))
    if not re.match(r"^https?://[^/]+", address):
        problems.append(f"{where}.address must be an http(s) URL, not {address!r}.")
    translation = backend.get("path_translation")
    if translation is not None and translation not in ("APPEND_PATH_TO_ADDRESS", "CONSTANT_ADDRESS"):
        problems.append(f"{where}.path_translation {translation!r} is unknown.")
    deadline = backend.get("deadline")
    if deadline is not None and not (isinstance(deadline, int | float) and 0 < deadline <= 3600):
        problems.append(f"{where}.deadline must be a number of seconds in (0, 3600].")
    return problems


def _reference_problems(node, definitions: dict) -> list[str]:
    problems = []
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            if not ref.startswith("#/definitions/"):
                problems.append(f"Reference {ref!r} is not supported: only local #/definitions references.")
            elif ref.removeprefix("#/definitions/") not in definitions:
                problems.append(f"Reference {ref!r} does not resolve.")
        for value in node.values():
            problems += _reference_problems(value, definitions)
    elif isinstance(node, list):
        for value in node:
            problems += _reference_problems(value, definitions)
    return problems


class ApiGatewayFake(GrpcFake):
    api = "apigateway.googleapis.com"

    def __init__(self):
        super().__init__()
        self.reset_state()

    def reset_state(self) -> None:
        self.apis: dict[str, gw.Api] = {}
        self.configs: dict[str, gw.ApiConfig] = {}
        self.documents: dict[str, dict] = {}
        self.gateways: dict[str, gw.Gateway] = {}

    def managed_services(self) -> set[str]:
        with self.lock:
            return {api.managed_service for api in self.apis.values()}

    def _op(self, name: str, verb: str, response, *, problems: list[str] | None = None, finish=None):
        location = "/".join(name.split("/")[:4])
        metadata = gw.OperationMetadata(
            create_time=_now(),
            end_time=_now(),
            target=name,
            verb=verb,
            api_version="v1",
            diagnostics=[gw.OperationMetadata.Diagnostic(location=name, message=p) for p in problems or ()],
        )
        error = None
        if problems:
            error = FakeError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Cannot convert to service config. 'location: \"openapi.json\"' " + "; ".join(problems),
            )
        return self.operation(
            response=response, metadata=metadata, error=error, prefix=f"{location}/operations", finish=finish
        )

    # --- APIs --------------------------------------------------------------------------------

    @rpc(SERVICE, "CreateApi", gw.CreateApiRequest, operations_pb2.Operation)
    def create_api(self, request, context):
        match = re.match(r"^projects/([^/]+)/locations/global$", request.parent)
        if not match:
            raise invalid(f"Invalid parent {request.parent!r}; APIs live in locations/global.")
        _check_id("api_id", request.api_id)
        name = f"{request.parent}/apis/{request.api_id}"
        if name in self.apis:
            raise already_exists(f"Resource '{name}' already exists")
        if sum(api.startswith(request.parent + "/") for api in self.apis) >= MAX_APIS:
            raise quota_exhausted(f"{MAX_APIS} APIs", f"project {match.group(1)}")
        digest = hashlib.sha1(name.encode()).hexdigest()[:13]
        api = gw.Api(
            name=name,
            create_time=_now(),
            update_time=_now(),
            labels=request.api.labels,
            display_name=request.api.display_name or request.api_id,
            managed_service=request.api.managed_service
            or f"{request.api_id}-{digest}.apigateway.{match.group(1)}.cloud.goog",
            state=gw.Api.State.ACTIVE,
        )
        self.apis[name] = api
        return self._op(name, "create", api)

    @rpc(SERVICE, "GetApi", gw.GetApiRequest, gw.Api)
    def get_api(self, request, context):
        if request.name not in self.apis:
            raise not_found(f"Resource '{request.name}'")
        return self.apis[request.name]

    @rpc(SERVICE, "DeleteApi", gw.DeleteApiRequest, operations_pb2.Operation)
    def delete_api(self, request, context):
        api = self.apis.get(request.name)
        if api is None:
            raise not_found(f"Resource '{request.name}'")
        if any(name.startswith(request.name + "/configs/") for name in self.configs):
            raise FakeError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"API {request.name} still has API configs: delete them before the API.",
            )
        return self._delete(self.apis, request.name, gw.Api.State.DELETING)

    # --- configs -----------------------------------------------------------------------------

    @rpc(SERVICE, "CreateApiConfig", gw.CreateApiConfigRequest, operations_pb2.Operation)
    def create_api_config(self, request, context):
        if request.parent not in self.apis:
            raise not_found(f"Resource '{request.parent}'")
        _check_id("api_config_id", request.api_config_id)
        name = f"{request.parent}/configs/{request.api_config_id}"
        if name in self.configs:
            raise already_exists(f"Resource '{name}' already exists")
        if sum(config.startswith(request.parent + "/configs/") for config in self.configs) >= MAX_CONFIGS:
            raise quota_exhausted(f"{MAX_CONFIGS} API configs per API", f"API {request.parent}")
        config = request.api_config
        if config.gateway_service_account and not EMAIL.match(config.gateway_service_account):
            raise invalid(
                f"gateway_service_account {config.gateway_service_account!r} is not a service account."
            )
        if bool(config.openapi_documents) == bool(config.grpc_services):
            raise invalid("Give either openapi_documents or grpc_services.")
        problems, parsed = [], None
        for document in config.openapi_documents:
            try:
                text = document.document.contents.decode()
                parsed = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
            except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
                problems.append(f"{document.document.path}: cannot parse: {exc}")
                continue
            problems += [f"{document.document.path}: {p}" for p in document_problems(parsed)]
        stored = gw.ApiConfig(
            config,
            name=name,
            create_time=_now(),
            update_time=_now(),
            service_config_id=f"{request.api_config_id}-{hashlib.sha1(name.encode()).hexdigest()[:6]}",
            state=gw.ApiConfig.State.FAILED if problems else gw.ApiConfig.State.ACTIVE,
        )
        self.configs[name] = stored
        if parsed is not None:
            self.documents[name] = parsed
        return self._op(name, "create", gw.ApiConfig(stored, openapi_documents=[]), problems=problems)

    @rpc(SERVICE, "GetApiConfig", gw.GetApiConfigRequest, gw.ApiConfig)
    def get_api_config(self, request, context):
        config = self.configs.get(request.name)
        if config is None:
            raise not_found(f"Resource '{request.name}'")
        if request.view == gw.GetApiConfigRequest.ConfigView.FULL:
            return config
        return gw.ApiConfig(config, openapi_documents=[])

    @rpc(SERVICE, "ListApis", gw.ListApisRequest, gw.ListApisResponse)
    def list_apis(self, request, context):
        found = [api for name, api in sorted(self.apis.items()) if name.startswith(request.parent + "/apis/")]
        return gw.ListApisResponse(apis=found)

    @rpc(SERVICE, "ListApiConfigs", gw.ListApiConfigsRequest, gw.ListApiConfigsResponse)
    def list_api_configs(self, request, context):
        found = [
            gw.ApiConfig(config, openapi_documents=[])
            for name, config in sorted(self.configs.items())
            if name.startswith(request.parent + "/configs/")
        ]
        return gw.ListApiConfigsResponse(api_configs=found)

    @rpc(SERVICE, "DeleteApiConfig", gw.DeleteApiConfigRequest, operations_pb2.Operation)
    def delete_api_config(self, request, context):
        config = self.configs.get(request.name)
        if config is None:
            raise not_found(f"Resource '{request.name}'")
        if any(gateway.api_config == request.name for gateway in self.gateways.values()):
            raise FakeError(
                grpc.StatusCode.FAILED_PRECONDITION, f"Config {request.name} is in use by a gateway."
            )
        return self._delete(self.configs, request.name, gw.ApiConfig.State.DELETING)

    def _delete(self, resources: dict, name: str, deleting) -> operations_pb2.Operation:
        """Mark the resource DELETING; it is gone when the operation completes."""
        resources[name].state = deleting

        def gone():
            resources.pop(name, None)
            self.documents.pop(name, None)

        return self._op(name, "delete", empty_pb2.Empty(), finish=gone)

    # --- gateways ----------------------------------------------------------------------------

    def _check_config(self, config_name: str) -> None:
        config = self.configs.get(config_name)
        if config is None:
            raise invalid(f"api_config {config_name!r} does not exist.")
        if config.state != gw.ApiConfig.State.ACTIVE:
            raise FakeError(
                grpc.StatusCode.FAILED_PRECONDITION, f"api_config {config_name!r} is {config.state.name}."
            )

    @rpc(SERVICE, "CreateGateway", gw.CreateGatewayRequest, operations_pb2.Operation)
    def create_gateway(self, request, context):
        match = re.match(r"^projects/([^/]+)/locations/([^/]+)$", request.parent)
        if not match or match.group(2) == "global":
            raise invalid(f"Invalid parent {request.parent!r}; gateways are regional.")
        _check_id("gateway_id", request.gateway_id, MAX_GATEWAY_ID)
        name = f"{request.parent}/gateways/{request.gateway_id}"
        if name in self.gateways:
            raise already_exists(f"Resource '{name}' already exists")
        self._check_config(request.gateway.api_config)
        if sum(gateway.startswith(request.parent + "/") for gateway in self.gateways) >= MAX_GATEWAYS:
            raise quota_exhausted(f"{MAX_GATEWAYS} gateways", f"region {match.group(2)}")
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        gateway = gw.Gateway(
            request.gateway,
            name=name,
            create_time=_now(),
            update_time=_now(),
            state=gw.Gateway.State.ACTIVE,
            default_hostname=f"{request.gateway_id}-{digest}.{match.group(2)[:2]}.gateway.dev",
        )
        self.gateways[name] = gateway
        return self._op(name, "create", gateway)

    @rpc(SERVICE, "ListGateways", gw.ListGatewaysRequest, gw.ListGatewaysResponse)
    def list_gateways(self, request, context):
        if not re.match(r"^projects/[^/]+/locations/[^/]+$", request.parent):
            raise invalid(f"Invalid parent {request.parent!r}.")
        found = [
            gateway
            for name, gateway in sorted(self.gateways.items())
            if name.startswith(request.parent + "/gateways/")
        ]
        return gw.ListGatewaysResponse(gateways=found)

    @rpc(SERVICE, "GetGateway", gw.GetGatewayRequest, gw.Gateway)
    def get_gateway(self, request, context):
        if request.name not in self.gateways:
            raise not_found(f"Resource '{request.name}'")
        return self.gateways[request.name]

    @rpc(SERVICE, "UpdateGateway", gw.UpdateGatewayRequest, operations_pb2.Operation)
    def update_gateway(self, request, context):
        gateway = self.gateways.get(request.gateway.name)
        if gateway is None:
            raise not_found(f"Resource '{request.gateway.name}'")
        paths = list(request.update_mask.paths) or ["api_config", "labels", "display_name"]
        unknown = set(paths) - {"api_config", "labels", "display_name"}
        if unknown:
            raise invalid(f"update_mask names fields that cannot be updated: {', '.join(sorted(unknown))}.")
        if "api_config" in paths:
            self._check_config(request.gateway.api_config)
        for path in paths:
            setattr(gateway, path, getattr(request.gateway, path))
        gateway.update_time = _now()
        return self._op(gateway.name, "update", gateway)

    @rpc(SERVICE, "DeleteGateway", gw.DeleteGatewayRequest, operations_pb2.Operation)
    def delete_gateway(self, request, context):
        if request.name not in self.gateways:
            raise not_found(f"Resource '{request.name}'")
        return self._delete(self.gateways, request.name, gw.Gateway.State.DELETING)
