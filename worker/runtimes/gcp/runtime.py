"""The `gcp` runtime: endpoints on Cloud Run, behind API Gateway (keys) or Cloud Armor (allowlist).

    RUNTIME=gcp GCP_PROJECT=... GCP_SERVING_IMAGE=... GCP_ARTIFACT_BUCKET=... \\
    GCP_GATEWAY_SERVICE_ACCOUNT=... GCP_LB_DOMAIN=...  (see the README's configuration table)

A deploy is a list of idempotent steps (see `deploy_steps`); each does one piece of Google work and
returns the names it made, which the portal journals and passes to the next step. A step that
starts a long-running operation returns its name and the next step waits for it, so a worker
that dies in between resumes by polling, not by doing the work twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from worker.runtimes.base import (
    AccessPolicy,
    DeploySpec,
    IssuedKey,
    KeySpec,
    Runtime,
    Step,
    StepResult,
)
from worker.runtimes.gcp import (
    armor,
    gateway,
    iam,
    keys,
    loadbalancer,
    plan,
    run,
    service_accounts,
    storage,
)
from worker.runtimes.gcp.clients import Context
from worker.runtimes.gcp.config import GcpConfig

#: What each access mode needs in front of the Cloud Run service, and how the page names it.
FRONTS = {"api_key": "gateway", "both": "gateway", "ip_allowlist": "load_balancer", "open": "none"}
FRONT_NAMES = {
    "gateway": "API Gateway",
    "load_balancer": "an HTTPS load balancer with Cloud Armor",
    "none": "nothing (the service's own URL is public)",
}
MODE_NAMES = {
    "api_key": "API key",
    "both": "API key and IP allowlist",
    "ip_allowlist": "IP allowlist",
    "open": "open",
}
#: The mode a live front enforces when the endpoint asks for one it cannot: the nearest that is no
#: less strict (a gateway asked for an allowlist restricts each key to it).
KEPT_ON = {"gateway": {"ip_allowlist": "both", "open": "api_key"}, "load_balancer": {}, "none": {}}

#: What a rollback deployment records from the deployment it goes back to.
ROLLBACK_KEPT = (
    "revision", "url", "run_url", "model_uri", "api", "managed_service", "managed_service_enabled",
    "api_config", "api_config_id", "gateway", "gateway_url", "security_policy", "load_balancer", "lb_address",
    "service_account",
)  # fmt: skip


class GcpRuntime(Runtime):
    name = "gcp"
    supports_canary = True  # traffic is split by revision name

    def __init__(
        self,
        config: GcpConfig | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.ctx = Context(config or GcpConfig.from_settings(), sleep=sleep, clock=clock, wall=wall)

    @property
    def cfg(self) -> GcpConfig:
        return self.ctx.cfg

    # --- deploy ------------------------------------------------------------------------------

    def deploy_steps(self, spec: DeploySpec) -> list[Step]:
        target = spec.rollback_to
        if target and target.get("revision"):
            return self.rollback_steps(spec, target)
        mode = spec.access.mode
        # The account comes first: the artifact step lets it read the bucket, the revision runs as it.
        steps = [
            Step(
                "service_account",
                "Make the endpoint's service account",
                lambda r: self._service_account(spec),
            ),
            Step("artifact", "Copy the model artifact to Cloud Storage", lambda r: self._artifact(spec)),
        ]
        if mode in run.ADDRESS_MODES:  # the policy is in place before any traffic can reach the service
            steps.append(
                Step("allowlist", "Apply the allowlist to Cloud Armor", lambda r: self._allowlist(spec))
            )
        steps += [
            Step("revision", "Deploy the Cloud Run revision", lambda r: self._revision(spec)),
            Step("revision_ready", "Wait for the revision to be ready", lambda r: self._revision_ready(r)),
        ]
        if mode in run.ADDRESS_MODES:
            steps.append(
                Step("load_balancer", "Put the HTTPS load balancer in front", lambda r: self._lb(spec))
            )
        if mode in run.KEY_MODES:
            steps += [
                Step("invoker", "Let the gateway invoke the service", lambda r: self._invoker(spec, r)),
                Step("gateway_config", "Create the API Gateway config", lambda r: self._config(spec, r)),
                Step("managed_service", "Enable the API's managed service", lambda r: self._enable(spec, r)),
                Step("gateway_config_ready", "Wait for the API config", lambda r: self._config_ready(r)),
                Step("gateway", "Point the gateway at the new config", lambda r: self._gateway(spec, r)),
                Step("gateway_ready", "Wait for the gateway", lambda r: self._gateway_ready(r)),
            ]
        if mode == "both":
            steps.append(
                Step("key_restrictions", "Restrict keys to the allowlist", lambda r: self._keys(spec))
            )
        return steps

    def rollback_steps(self, spec: DeploySpec, target: dict) -> list[Step]:
        """Go back to an earlier deployment (`target` = its resources) without building anything:
        traffic back to its revision, the gateway back to its config."""
        steps = [
            Step(
                "traffic", f"Move traffic back to {target['revision']}", lambda r: self._traffic(spec, target)
            ),
            Step("traffic_ready", "Wait for the traffic move", lambda r: self._traffic_ready(r)),
        ]
        if spec.access.mode in run.KEY_MODES and target.get("api_config"):
            steps += [
                Step("gateway", "Point the gateway back at its config", lambda r: self._gateway(spec, r)),
                Step("gateway_ready", "Wait for the gateway", lambda r: self._gateway_ready(r)),
            ]
        return steps

    def _traffic(self, spec: DeploySpec, target: dict) -> StepResult:
        kept = {key: target[key] for key in ROLLBACK_KEPT if key in target}
        service = target.get("service") or run.service_name(self.ctx, spec.endpoint, spec.resources.region)
        moved = run.set_traffic(self.ctx, service, [(target["revision"], 100)])
        return StepResult(
            f"Moving all traffic to {target['revision']}", {**kept, "service": service, **moved}
        )

    def _traffic_ready(self, resources: dict) -> StepResult:
        found = run.wait_traffic(self.ctx, resources)
        return StepResult(f"{resources['revision']} serves all traffic again", found)

    def _service_account(self, spec: DeploySpec) -> StepResult:
        account = self.cfg.service_account_for(spec.endpoint)
        found = {"service_account": account}
        if spec.previous.get("service_account") == account:  # the live deployment has it: no call
            return StepResult(f"{account} exists", found)
        created = service_accounts.ensure(self.ctx, account, spec.endpoint)
        return StepResult(f"{account} {'created' if created else 'exists'}", found)

    def _artifact(self, spec: DeploySpec) -> StepResult:
        done = storage.ensure_artifact(self.ctx, spec.model)
        account = self.cfg.service_account_for(spec.endpoint)
        member = f"serviceAccount:{account}"
        granted = False
        if spec.previous.get("reader") != member:  # the live deployment already granted it: no read
            granted = storage.grant_reader(self.ctx, member)
        message = done + (f"; {account} may now read the bucket" if granted else "")
        return StepResult(message, {"model_uri": storage.model_uri(self.ctx, spec.model), "reader": member})

    def _revision(self, spec: DeploySpec) -> StepResult:
        resources = run.deploy_revision(self.ctx, spec)
        split = ", ".join(f"{t['revision']} {t['percent']}%" for t in resources["traffic"])
        return StepResult(f"Deploying {resources['revision']} (traffic: {split})", resources)

    def _revision_ready(self, resources: dict) -> StepResult:
        found = run.wait_revision(self.ctx, resources)
        return StepResult(f"{resources['revision']} is ready at {found['url']}", found)

    def _invoker(self, spec: DeploySpec, resources: dict) -> StepResult:
        member = f"serviceAccount:{self.cfg.gateway_service_account}"
        previous = spec.previous
        # A service of generation 1 was (re)created by this deploy: its policy is new, grant again.
        if (
            previous.get("invoker") == member
            and previous.get("service") == resources["service"]
            and resources.get("service_generation", 1) > 1
        ):
            return StepResult(
                f"{self.cfg.gateway_service_account} may invoke the service", {"invoker": member}
            )
        changed = iam.grant(self.ctx, self.ctx.clients.run(), resources["service"], iam.INVOKER, member)
        verb = "may now invoke" if changed else "already may invoke"
        return StepResult(f"{self.cfg.gateway_service_account} {verb} the service", {"invoker": member})

    def _config(self, spec: DeploySpec, resources: dict) -> StepResult:
        made = gateway.create_config(self.ctx, spec, resources)
        return StepResult(f"Creating API config {made['api_config_id']}", made)

    def _enable(self, spec: DeploySpec, resources: dict) -> StepResult:
        service = resources["managed_service"]
        if spec.previous.get("managed_service_enabled") == service:
            return StepResult(f"{service} is enabled", {"managed_service_enabled": service})
        changed = gateway.enable_managed_service(self.ctx, service)
        return StepResult(
            f"{service} {'enabled' if changed else 'is enabled'}", {"managed_service_enabled": service}
        )

    def _config_ready(self, resources: dict) -> StepResult:
        gateway.wait_config(self.ctx, resources)
        return StepResult(f"API config {resources['api_config_id']} is active")

    def _gateway(self, spec: DeploySpec, resources: dict) -> StepResult:
        made = gateway.point_gateway(self.ctx, spec, resources["api_config"])
        return StepResult(f"Pointing gateway {spec.endpoint} at {resources['api_config_id']}", made)

    def _gateway_ready(self, resources: dict) -> StepResult:
        found = gateway.wait_gateway(self.ctx, resources)
        return StepResult(f"Gateway serves {resources['api_config_id']} at {found['gateway_url']}", found)

    def _allowlist(self, spec: DeploySpec) -> StepResult:
        message = armor.apply_allowlist(self.ctx, spec.endpoint, spec.access.cidrs)
        return StepResult(message, {"security_policy": armor.policy_name(spec.endpoint)})

    def _lb(self, spec: DeploySpec) -> StepResult:
        previous = spec.previous
        rule = loadbalancer.names(spec.endpoint)["rule"]
        if previous.get("load_balancer") == rule and previous.get("lb_address"):
            found = {key: previous[key] for key in ("load_balancer", "lb_address")}
            found["url"] = f"https://{loadbalancer.hostname(self.ctx, spec.endpoint)}"
            return StepResult(f"Reusing the load balancer at {found['lb_address']}", found)
        found, created = loadbalancer.ensure_chain(self.ctx, spec)
        made = ", ".join(created) or "nothing (all there)"
        host = loadbalancer.hostname(self.ctx, spec.endpoint)
        return StepResult(f"Created {made}; point {host} (DNS A record) at {found['lb_address']}", found)

    def _keys(self, spec: DeploySpec) -> StepResult:
        changed = keys.sync_allowed_ips(self.ctx, spec.endpoint, keys.allowed_ips(spec.access.cidrs, True))
        return StepResult(f"{changed} key(s) updated to the allowlist")

    # --- access, keys, stop --------------------------------------------------------------------

    def apply_access(self, endpoint: str, access: AccessPolicy) -> None:
        """Keys carry the allowlist in `both` mode (none in `api_key` mode); Cloud Armor in `ip_allowlist`.

        An empty allowlist leaves Cloud Armor with its default deny alone, and restricts keys to
        an address no request comes from. Switching between modes that need another front
        (gateway, load balancer, none) takes a deploy: see `access_for_live`.
        """
        if access.mode in run.KEY_MODES:
            keys.sync_allowed_ips(self.ctx, endpoint, keys.allowed_ips(access.cidrs, access.mode == "both"))
        elif access.mode in run.ADDRESS_MODES:
            armor.apply_allowlist(self.ctx, endpoint, access.cidrs)

    def access_for_live(self, live: dict | None, access: AccessPolicy) -> tuple[AccessPolicy, str]:
        """Keys and the allowlist change on a live endpoint at once; a mode whose front differs
        from the live deployment's (API Gateway for keys, a load balancer with Cloud Armor for an
        allowlist, nothing for open) needs a deploy, which builds that front and sets the service's
        ingress and invoker policy. Until then the live front keeps enforcing what it can."""
        if not live:
            return access, ""
        if live.get("gateway"):
            front = "gateway"
        elif live.get("load_balancer") or live.get("security_policy"):
            front = "load_balancer"
        else:
            front = "none"
        wanted = FRONTS[access.mode]
        if wanted == front:
            return access, ""
        kept = {"gateway": "api_key", "load_balancer": "ip_allowlist", "none": "open"}[front]
        kept = KEPT_ON[front].get(access.mode, kept)
        note = (
            f"On Google Cloud the {MODE_NAMES[access.mode]} mode needs {FRONT_NAMES[wanted]} in front "
            f"of the service; the live deployment has {FRONT_NAMES[front]}. Deploy the endpoint again to "
            f"switch. Until then it keeps enforcing the {MODE_NAMES[kept]} mode, with the current keys "
            "and allowlist."
        )
        return replace(access, mode=kept), note

    def issue_key(self, spec: KeySpec) -> IssuedKey:
        managed_service = gateway.ensure_api(self.ctx, spec.endpoint)
        return keys.issue(self.ctx, spec, managed_service)

    def revoke_key(self, endpoint: str, key_name: str) -> None:
        keys.revoke(self.ctx, key_name)

    def restore_key(self, endpoint: str, key_name: str) -> None:
        """Undelete the Google key (Google keeps a deleted key for 30 days)."""
        keys.restore(self.ctx, key_name)

    def stop_endpoint(self, endpoint: str) -> None:
        """Delete the gateway, then the Cloud Run service. The API, its configs, the keys, the
        security policy and the load balancer stay: a later deploy reuses them."""
        gateway.delete_gateway(self.ctx, endpoint)
        run.delete_services(self.ctx, endpoint)

    def plan(self, spec: DeploySpec) -> list[plan.Change]:
        """What deploying `spec` would change, found with reads and validate-only calls."""
        return plan.plan(self.ctx, spec)

    def ensure_serving(self, spec: DeploySpec) -> bool:
        """Cloud Run keeps ready revisions serving by itself: nothing to start, no call to make."""
        return False
