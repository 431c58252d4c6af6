"""API Gateway (and Service Usage): how API-key endpoints are reached.

Per endpoint: one API `projects/<p>/locations/global/apis/<endpoint>` (its managed service is what
keys are restricted to), one regional gateway `.../locations/<GCP_GATEWAY_REGION>/gateways/<endpoint>`,
and one immutable config per deployment, named like its revision (`revision_name`:
`<endpoint>-d<deployment id>`), built from the serving OpenAPI document (see `swagger.py`). A
deploy creates the config, then points the gateway at it; the API and the gateway are created the
first time. The API's managed service is enabled in the project (Service Usage) so the gateway
accepts keys made there. Then the endpoint's older configs are deleted, all but the newest
GCP_KEEP_API_CONFIGS (API Gateway allows 100 configs per API); the live config and the one the
gateway serves are never deleted.

A create that meets AlreadyExists is checked, not trusted: a config is ours when its
`portal-document` label is the digest of the document we would send (the client and our own retry
may both have sent it); anything else under our id fails the step.
"""

from __future__ import annotations

import hashlib
import json
import re

from google.api_core import exceptions as gexc
from google.cloud import apigateway_v1 as gw
from google.cloud import service_usage_v1 as su

from worker.runtimes.base import DeploySpec, PermanentError, TransientError, deployment_number, revision_name
from worker.runtimes.gcp.clients import Context
from worker.runtimes.gcp.operations import StillRunning, operation_result, wait_until
from worker.runtimes.gcp.swagger import serving_openapi, to_swagger2
from worker.runtimes.resources import DeploymentResources

CONFIG_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
LABELS = {"managed-by": "model-endpoint-portal"}


def api_name(ctx: Context, endpoint: str) -> str:
    return f"projects/{ctx.cfg.project}/locations/global/apis/{endpoint}"


def gateway_name(ctx: Context, endpoint: str) -> str:
    return f"projects/{ctx.cfg.project}/locations/{ctx.cfg.gateway_region}/gateways/{endpoint}"


def config_id(spec: DeploySpec) -> str:
    value = revision_name(spec.endpoint, spec.deployment_id)
    if len(value) > 63 or not CONFIG_ID.match(value):
        raise PermanentError(
            f"API config id {value!r} is not valid for API Gateway: at most 63 lowercase letters, digits and "
            "dashes, not starting with a dash."
        )
    return value


def config_document(spec: DeploySpec, backend: str) -> bytes:
    doc = to_swagger2(
        serving_openapi(spec.model),
        backend=backend,
        deadline=spec.resources.timeout_seconds,
        title=f"{spec.endpoint} ({spec.model.name} v{spec.model.version})",
    )
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def ensure_api(ctx: Context, endpoint: str, *, create_first: bool = False) -> str:
    """The endpoint's API, created if absent; returns its managed service name.

    `create_first` when the API most likely does not exist yet (a first deploy): one call, not two.
    """
    client = ctx.clients.gateway()
    name = api_name(ctx, endpoint)
    api = (
        None
        if create_first
        else ctx.call(client.get_api, name=name, what=f"Read API {name}", accept=(gexc.NotFound,))
    )
    if api is None:
        started = ctx.wall()
        operation = ctx.call(
            client.create_api,
            request=gw.CreateApiRequest(
                parent=name.rsplit("/apis/", 1)[0],
                api_id=endpoint,
                api=gw.Api(display_name=endpoint, labels={**LABELS, "portal-endpoint": endpoint}),
            ),
            what=f"Create API {name}",
            accept=(gexc.AlreadyExists,),  # made by a key issued earlier, or by our own earlier try
        )
        if operation is not None:
            api = operation_result(
                ctx,
                client,
                operation.operation.name,
                what=f"Create API {name}",
                started=started,
                result_cls=gw.Api,
            )
        else:
            api = ctx.call(client.get_api, name=name, what=f"Read API {name}")
    if api.state == gw.Api.State.CREATING:
        raise StillRunning(f"API {name} is still being created.", retry_after=ctx.cfg.poll_interval)
    if api.state != gw.Api.State.ACTIVE:
        raise PermanentError(f"API {name} is {api.state.name}; delete it or ask support.")
    return api.managed_service


def create_config(ctx: Context, spec: DeploySpec, resources: DeploymentResources) -> DeploymentResources:
    """Create this deployment's API config; return its name and the operation to wait for."""
    client = ctx.clients.gateway()
    previous = spec.previous
    api = api_name(ctx, spec.endpoint)
    if previous.get("api") == api and previous.get("managed_service"):
        managed_service = previous["managed_service"]  # made by an earlier deployment: no read needed
    else:
        managed_service = ensure_api(ctx, spec.endpoint, create_first=True)
    cid = config_id(spec)
    body = config_document(spec, resources["run_url"])
    digest = hashlib.sha256(body).hexdigest()[:40]
    name = f"{api}/configs/{cid}"
    started = ctx.wall()
    operation = ctx.call(
        client.create_api_config,
        request=gw.CreateApiConfigRequest(
            parent=api,
            api_config_id=cid,
            api_config=gw.ApiConfig(
                display_name=cid,
                labels={
                    **LABELS,
                    "portal-endpoint": spec.endpoint,
                    "portal-deployment": str(spec.deployment_id),
                    "portal-document": digest,
                },
                gateway_service_account=ctx.cfg.gateway_service_account,
                openapi_documents=[
                    gw.ApiConfig.OpenApiDocument(
                        document=gw.ApiConfig.File(path="openapi.json", contents=body)
                    )
                ],
            ),
        ),
        what=f"Create API config {cid}",
        accept=(gexc.AlreadyExists,),
    )
    if operation is None:
        existing = ctx.call(client.get_api_config, name=name, what=f"Read API config {cid}")
        if existing.labels.get("portal-document") != digest:
            raise PermanentError(
                f"API config {cid} already exists with another document; it was not made by this deployment."
            )
    return {
        "api": api,
        "managed_service": managed_service,
        "api_config": name,
        "api_config_id": cid,
        "config_operation": operation.operation.name if operation is not None else "",
        "config_operation_started": started,
    }


def _diagnostics(operation) -> str:
    metadata = (
        gw.OperationMetadata.deserialize(operation.metadata.value) if operation.metadata.value else None
    )
    if metadata is None or not metadata.diagnostics:
        return ""
    return " Diagnostics: " + "; ".join(f"{d.location}: {d.message}" for d in metadata.diagnostics)


def wait_config(ctx: Context, resources: DeploymentResources) -> None:
    client = ctx.clients.gateway()
    what = f"API config {resources['api_config_id']}"
    started = resources["config_operation_started"]
    if resources.get("config_operation"):
        operation_result(
            ctx, client, resources["config_operation"], what=what, started=started, describe=_diagnostics
        )
        return

    def read():  # no operation to poll (the create was answered AlreadyExists): poll the config
        config = ctx.call(client.get_api_config, name=resources["api_config"], what=f"Read {what}")
        if config.state == gw.ApiConfig.State.ACTIVE:
            return config
        if config.state == gw.ApiConfig.State.FAILED:
            raise PermanentError(f"{what} failed; see its operation in the Cloud console.")
        return None

    wait_until(ctx, read, what=what, started=started)


def point_gateway(ctx: Context, spec: DeploySpec, config: str) -> DeploymentResources:
    """Point the endpoint's gateway at `config`, creating the gateway the first time."""
    client = ctx.clients.gateway()
    name = gateway_name(ctx, spec.endpoint)
    gateway = gw.Gateway(
        name=name,
        api_config=config,
        display_name=spec.endpoint,
        labels={**LABELS, "portal-endpoint": spec.endpoint},
    )
    update = gw.UpdateGatewayRequest(gateway=gateway, update_mask={"paths": ["api_config"]})
    started = ctx.wall()
    what = f"Point gateway {spec.endpoint} at {config.rsplit('/', 1)[-1]}"
    operation = None
    if spec.previous.get("gateway") == name:  # it exists: update (one call)
        operation = ctx.call(client.update_gateway, request=update, what=what, accept=(gexc.NotFound,))
    if operation is None:
        operation = ctx.call(
            client.create_gateway,
            request=gw.CreateGatewayRequest(
                parent=name.rsplit("/gateways/", 1)[0], gateway_id=spec.endpoint, gateway=gateway
            ),
            what=f"Create gateway {spec.endpoint}",
            accept=(gexc.AlreadyExists,),
        )
    if operation is None:
        operation = ctx.call(client.update_gateway, request=update, what=what)
    return {
        "gateway": name,
        "gateway_operation": operation.operation.name,
        "gateway_operation_started": started,
    }


def wait_gateway(ctx: Context, resources: DeploymentResources) -> DeploymentResources:
    gateway = operation_result(
        ctx,
        ctx.clients.gateway(),
        resources["gateway_operation"],
        what=f"Gateway {resources['gateway'].rsplit('/', 1)[-1]}",
        started=resources["gateway_operation_started"],
        result_cls=gw.Gateway,
    )
    return {"gateway_url": f"https://{gateway.default_hostname}"}


#: How soon to look again when another enable of the same service is still running.
ACTIVATION_BUSY_SECONDS = 15.0


def start_enable(ctx: Context, managed_service: str) -> DeploymentResources:
    """Start enabling the API's managed service in the project (so keys made here are accepted);
    the operation to poll, or nothing when the service is enabled already.

    Read first, and wait out an activation still running (Google refuses a second one meanwhile):
    a step retried while its enable runs polls it, it never starts another."""
    client = ctx.clients.usage()
    name = f"projects/{ctx.cfg.project}/services/{managed_service}"
    service = ctx.call(client.get_service, request={"name": name}, what=f"Read {managed_service}")
    if service.state == su.State.ENABLED:
        return {}
    started = ctx.wall()
    try:
        operation = ctx.call(client.enable_service, request={"name": name}, what=f"Enable {managed_service}")
    except PermanentError as exc:
        if "activation or deactivation is in progress" not in str(exc).lower():
            raise
        raise TransientError(
            f"Enable {managed_service}: another activation is still running; waiting for it.",
            retry_after=ACTIVATION_BUSY_SECONDS,
        ) from exc
    return {"enable_operation": operation.operation.name, "enable_operation_started": started}


def wait_enabled(ctx: Context, managed_service: str, resources: DeploymentResources) -> None:
    """Poll the enable operation `start_enable` recorded, if it started one."""
    if resources.get("enable_operation"):
        operation_result(
            ctx,
            ctx.clients.usage(),
            resources["enable_operation"],
            what=f"Enable {managed_service}",
            started=resources["enable_operation_started"],
        )


def prune_configs(ctx: Context, spec: DeploySpec, live: str) -> list[str]:
    """Start deleting the endpoint's configs past the newest `GCP_KEEP_API_CONFIGS`; never `live` nor
    the config the gateway serves. Returns the configs deleted; one already going or gone is skipped."""
    client = ctx.clients.gateway()
    name = gateway_name(ctx, spec.endpoint)
    serving = ctx.call(client.get_gateway, name=name, what=f"Read {name}", accept=(gexc.NotFound,))
    kept = {live} | ({serving.api_config} if serving is not None else set())
    ours = [
        config
        for config in api_configs(ctx, api_name(ctx, spec.endpoint))
        if config.labels.get("portal-endpoint") == spec.endpoint
        and config.state != gw.ApiConfig.State.DELETING
    ]
    ours.sort(key=lambda config: deployment_number(config.name.rsplit("/", 1)[-1]), reverse=True)
    for config in ours:
        if len(kept) >= ctx.cfg.keep_api_configs:
            break
        kept.add(config.name)
    doomed = [config.name for config in ours if config.name not in kept]
    for doomed_name in doomed:
        ctx.call(
            client.delete_api_config,
            name=doomed_name,
            what=f"Delete API config {doomed_name.rsplit('/', 1)[-1]}",
            accept=(gexc.NotFound,),  # deleted since the list
        )
    return doomed


def config_names(ctx: Context, api: str) -> list[str]:
    """The names of the API's configs (none when the API is gone), every page read."""
    return [config.name for config in api_configs(ctx, api)]


def api_configs(ctx: Context, api: str) -> list[gw.ApiConfig]:
    """The API's configs (none when the API is gone), every page read."""
    return _every(ctx, ctx.clients.gateway().list_api_configs, api, "api_configs", f"the configs of {api}")


def apis(ctx: Context) -> list[gw.Api]:
    """The project's APIs, every page read."""
    parent = f"projects/{ctx.cfg.project}/locations/global"
    return _every(ctx, ctx.clients.gateway().list_apis, parent, "apis", "the project's APIs")


def gateways(ctx: Context) -> list[gw.Gateway]:
    """The gateways in the runtime's gateway region, every page read."""
    parent = f"projects/{ctx.cfg.project}/locations/{ctx.cfg.gateway_region}"
    return _every(ctx, ctx.clients.gateway().list_gateways, parent, "gateways", f"the gateways in {parent}")


def _every(ctx: Context, method, parent: str, field: str, what: str) -> list:
    """Every item of a paged list (none when `parent` is gone)."""
    found: list = []
    token = ""
    while True:
        page = ctx.call(
            method,
            request={"parent": parent, "page_size": 500, "page_token": token},
            what=f"List {what}",
            accept=(gexc.NotFound,),
        )
        if page is None:
            return found
        found += list(getattr(page, field))
        token = page.next_page_token
        if not token:
            return found
