"""Plan mode: what a deploy would change on Google Cloud, found without changing anything.

    GcpRuntime().plan(spec)  ->  [Change("revision", "update", "deploy revision iris-d12 ..."), ...]

Each step reads the state it would write (the service account, object metadata, IAM policies, the
security policy, the API, the gateway, the load balancer's pieces) and says what it would do. The
Cloud Run write is sent with `validate_only`, so Cloud Run checks the whole service (names, limits,
traffic) and answers without deploying; the allowlist is diffed exactly as a sync would diff it.
"""

from __future__ import annotations

from google.api_core import exceptions as gexc
from google.cloud import run_v2
from google.cloud import service_usage_v1 as su

from worker.runtimes.base import Change, DeploySpec, RuntimeFailure
from worker.runtimes.gcp import armor, gateway, iam, loadbalancer, run, service_accounts, storage
from worker.runtimes.gcp.clients import Context

__all__ = ["Change", "plan"]


def plan(ctx: Context, spec: DeploySpec) -> list[Change]:
    mode = spec.access.mode
    checks = [("service_account", _service_account), ("artifact", _artifact)]
    if mode in run.ADDRESS_MODES:
        checks.append(("allowlist", _allowlist))
    checks.append(("revision", _revision))
    if mode in run.KEY_MODES:
        checks += [("invoker", _invoker), ("gateway", _gateway)]
    if mode in run.ADDRESS_MODES:
        checks.append(("load_balancer", _load_balancer))
    changes = []
    for step, check in checks:
        try:
            changes += check(ctx, spec)
        except RuntimeFailure as exc:
            changes.append(Change(step, "error", str(exc)))
    return changes


def _service_account(ctx: Context, spec: DeploySpec) -> list[Change]:
    account = ctx.cfg.service_account_for(spec.endpoint)
    if spec.previous.get("service_account") == account or service_accounts.exists(ctx, account):
        return [Change("service_account", "none", f"{account} exists")]
    return [Change("service_account", "create", f"create the service account {account}")]


def _artifact(ctx: Context, spec: DeploySpec) -> list[Change]:
    done = storage.ensure_artifact(ctx, spec.model, validate_only=True)
    account = ctx.cfg.service_account_for(spec.endpoint)
    changes = [Change("artifact", "create" if done.startswith("would") else "none", done)]
    if storage.grant_reader(ctx, f"serviceAccount:{account}", validate_only=True):
        changes.append(Change("artifact", "update", f"grant {account} read access to the bucket"))
    return changes


def _allowlist(ctx: Context, spec: DeploySpec) -> list[Change]:
    client = ctx.clients.compute("SecurityPoliciesClient")
    name = armor.policy_name(spec.endpoint)
    policy = ctx.call(
        client.get,
        project=ctx.cfg.project,
        security_policy=name,
        what=f"Read {name}",
        accept=(gexc.NotFound,),
    )
    if policy is None:
        rules = armor.layout(ctx, spec.access.cidrs, {armor.DEFAULT_PRIORITY})
        return [Change("allowlist", "create", f"create {name}: {len(rules)} allow rule(s), default deny")]
    adds, patches, removes, _ = armor.diff(ctx, policy, spec.access.cidrs)
    if not (adds or patches or removes):
        return [Change("allowlist", "none", f"{name} already allows the {len(spec.access.cidrs)} range(s)")]
    return [Change("allowlist", "update", f"{name}: add {adds}, update {patches}, remove {removes}")]


def _revision(ctx: Context, spec: DeploySpec) -> list[Change]:
    service = run.build_service(ctx, spec)
    operation = ctx.call(
        ctx.clients.run().update_service,
        request=run_v2.UpdateServiceRequest(service=service, allow_missing=True, validate_only=True),
        what=f"Validate Cloud Run revision {service.template.revision}",
    )
    checked = (
        run_v2.Service.deserialize(operation.operation.response.value) if operation.operation.done else None
    )
    split = ", ".join(f"{t.revision} {t.percent}%" for t in service.traffic)
    note = " (validated by Cloud Run)" if checked is not None else ""
    return [
        Change("revision", "update", f"deploy revision {service.template.revision}, traffic {split}{note}")
    ]


def _invoker(ctx: Context, spec: DeploySpec) -> list[Change]:
    name = run.service_name(ctx, spec.endpoint, spec.resources.region)
    member = f"serviceAccount:{ctx.cfg.gateway_service_account}"
    try:
        needed = iam.grant(ctx, ctx.clients.run(), name, iam.INVOKER, member, validate_only=True)
    except RuntimeFailure:
        needed = True  # the service does not exist yet
    return [Change("invoker", "update" if needed else "none", f"{iam.INVOKER} for {member} on {name}")]


def _gateway(ctx: Context, spec: DeploySpec) -> list[Change]:
    client = ctx.clients.gateway()
    changes = []
    api = gateway.api_name(ctx, spec.endpoint)
    existing_api = ctx.call(client.get_api, name=api, what=f"Read {api}", accept=(gexc.NotFound,))
    if existing_api is None:
        changes.append(Change("gateway", "create", f"create API {api}"))
    config = gateway.config_id(spec)
    changes.append(
        Change("gateway", "create", f"create API config {config} (routes: POST /predict, GET /v1/model)")
    )
    name = gateway.gateway_name(ctx, spec.endpoint)
    current = ctx.call(client.get_gateway, name=name, what=f"Read {name}", accept=(gexc.NotFound,))
    if current is None:
        changes.append(Change("gateway", "create", f"create gateway {name} on {config}"))
    else:
        was = current.api_config.rsplit("/", 1)[-1]
        changes.append(Change("gateway", "update", f"point gateway {spec.endpoint} from {was} to {config}"))
    if existing_api is not None:
        usage = ctx.clients.usage()
        service = f"projects/{ctx.cfg.project}/services/{existing_api.managed_service}"
        state = ctx.call(usage.get_service, request={"name": service}, what=f"Read {service}")
        if state.state != su.State.ENABLED:
            changes.append(Change("gateway", "update", f"enable {existing_api.managed_service}"))
    else:
        changes.append(Change("gateway", "update", "enable the new API's managed service"))
    return changes


def _load_balancer(ctx: Context, spec: DeploySpec) -> list[Change]:
    names = loadbalancer.names(spec.endpoint)
    region = spec.resources.region
    project = ctx.cfg.project
    lookups = [
        ("GlobalAddressesClient", {"address": names["address"]}),
        ("SslCertificatesClient", {"ssl_certificate": names["certificate"]}),
        ("RegionNetworkEndpointGroupsClient", {"region": region, "network_endpoint_group": names["neg"]}),
        ("BackendServicesClient", {"backend_service": names["backend"]}),
        ("UrlMapsClient", {"url_map": names["url_map"]}),
        ("TargetHttpsProxiesClient", {"target_https_proxy": names["proxy"]}),
        ("GlobalForwardingRulesClient", {"forwarding_rule": names["rule"]}),
    ]
    missing = []
    for client_name, key in lookups:
        client = ctx.clients.compute(client_name)
        found = ctx.call(client.get, project=project, what=f"Read {key}", accept=(gexc.NotFound,), **key)
        if found is None:
            missing.append(next(iter(key.values())) if "region" not in key else key["network_endpoint_group"])
    if not missing:
        return [Change("load_balancer", "none", f"reuse the load balancer of {spec.endpoint}")]
    return [Change("load_balancer", "create", "create " + ", ".join(missing))]
