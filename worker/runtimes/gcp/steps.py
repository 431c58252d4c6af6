"""The gcp runtime's deploy steps: each does one piece of Google work and can say what it would do.

    steps = DeploySteps(ctx, spec)
    for step in steps.all():  # or steps.rollback() when the spec rolls back
        resources.update(step.run(resources).resources)

Each step returns the names it made, which the portal journals and passes to the next step. A step
that starts a long-running operation returns its name and the next step waits for it, so a worker
that dies in between resumes by polling, not by doing the work twice.

A step's plan reads the state its run would write (the service account, object metadata, IAM
policies, the security policy, the API, the gateway, the load balancer's pieces) and says what the
run would change. The Cloud Run write is sent with `validate_only`, so Cloud Run checks the whole
service (names, limits, traffic) and answers without deploying; the allowlist is diffed exactly as
a sync would diff it.
"""

from __future__ import annotations

from typing import Literal, get_args

from google.api_core import exceptions as gexc
from google.cloud import apigateway_v1 as gw
from google.cloud import service_usage_v1 as su

from worker.runtimes.base import Change, DeploySpec, Pending, PermanentError, RuntimeFailure, Step, StepResult
from worker.runtimes.gcp import (
    armor,
    doctor,
    errors,
    gateway,
    iam,
    keys,
    loadbalancer,
    run,
    service_accounts,
    storage,
)
from worker.runtimes.gcp.clients import Context
from worker.runtimes.resources import DeploymentResources

#: What a rollback deployment records from the deployment it goes back to.
RollbackKept = Literal[
    "revision", "url", "run_url", "model_uri", "api", "managed_service", "managed_service_enabled",
    "api_config", "api_config_id", "gateway", "gateway_url", "security_policy", "load_balancer", "lb_address",
    "service_account",
]  # fmt: skip
ROLLBACK_KEPT: tuple[RollbackKept, ...] = get_args(RollbackKept)
#: How often a deploy looks again while a new service account propagates.
PROPAGATION_POLL_SECONDS = 15.0


class DeploySteps:
    """The steps of one deploy of `spec`; each may run again and finds what its earlier run made."""

    def __init__(self, ctx: Context, spec: DeploySpec):
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.spec = spec

    def all(self) -> list[Step]:
        mode = self.spec.access.mode
        # The project is checked before anything is made. Then the account: the artifact step
        # lets it read the bucket, the revision runs as it.
        steps = [
            Step(
                "preconditions",
                "Check the Google Cloud project",
                lambda resources: StepResult(doctor.require_ready(self.ctx)),
                lambda: doctor.plan_changes(self.ctx),
            ),
            Step(
                "service_account",
                "Make the endpoint's service account",
                self.service_account,
                self.plan_service_account,
            ),
            Step("artifact", "Copy the model artifact to Cloud Storage", self.artifact, self.plan_artifact),
        ]
        if mode in run.ADDRESS_MODES:  # the policy is in place before any traffic can reach the service
            steps.append(
                Step("allowlist", "Apply the allowlist to Cloud Armor", self.allowlist, self.plan_allowlist)
            )
        steps += [
            Step("revision", "Deploy the Cloud Run revision", self.revision, self.plan_revision),
            Step("revision_ready", "Wait for the revision to be ready", self.revision_ready),
        ]
        if mode in run.ADDRESS_MODES:
            steps.append(
                Step(
                    "load_balancer",
                    "Put the HTTPS load balancer in front",
                    self.load_balancer,
                    self.plan_load_balancer,
                )
            )
        if mode in run.IAM_MODES:
            steps.append(
                Step(
                    "invokers",
                    "Let the endpoint's invokers call the service",
                    self.invokers,
                    self.plan_invokers,
                )
            )
        if mode in run.KEY_MODES:
            steps += [
                Step("invoker", "Let the gateway invoke the service", self.invoker, self.plan_invoker),
                Step(
                    "gateway_config",
                    "Create the API Gateway config",
                    self.gateway_config,
                    self.plan_gateway_config,
                ),
                # The managed service is enabled once the first config is active.
                Step("gateway_config_ready", "Wait for the API config", self.gateway_config_ready),
                Step(
                    "managed_service",
                    "Enable the API's managed service",
                    self.managed_service,
                    self.plan_managed_service,
                ),
                Step("managed_service_ready", "Wait for the managed service", self.managed_service_ready),
                Step("gateway", "Point the gateway at the new config", self.gateway, self.plan_gateway),
                Step("gateway_ready", "Wait for the gateway", self.gateway_ready),
                Step("prune_configs", "Delete old API configs", self.prune_configs),
            ]
        if mode == "both":
            steps.append(Step("key_restrictions", "Restrict keys to the allowlist", self.key_restrictions))
        return steps

    def rollback(self) -> list[Step]:
        """Go back to an earlier deployment (`spec.rollback_to`) without building anything: traffic
        back to its revision, the gateway back to its config. Nothing is planned: a plan is asked
        for new deployments only."""
        target = self.spec.rollback_to
        steps = [
            Step("traffic", f"Move traffic back to {target['revision']}", self.traffic),
            Step("traffic_ready", "Wait for the traffic move", self.traffic_ready),
        ]
        if self.spec.access.mode in run.KEY_MODES and target.get("api_config"):
            steps += [
                Step("gateway", "Point the gateway back at its config", self.gateway),
                Step("gateway_ready", "Wait for the gateway", self.gateway_ready),
            ]
        return steps

    @property
    def account(self) -> str:
        return self.cfg.service_account_for(self.spec.endpoint)

    # service_account ---------------------------------------------------------------------------
    def service_account(self, resources: DeploymentResources) -> StepResult:
        account = self.account
        found: DeploymentResources = {"service_account": account}
        if self.spec.previous.get("service_account") == account:  # the live deployment has it: no call
            return StepResult(f"{account} exists", found)
        created = service_accounts.ensure(self.ctx, account, self.spec.endpoint)
        found["service_account_created"] = created
        if created:
            found["service_account_made_at"] = self.ctx.wall()
        return StepResult(f"{account} {'created' if created else 'exists'}", found)

    def plan_service_account(self) -> list[Change]:
        account = self.account
        if self.spec.previous.get("service_account") == account or service_accounts.exists(self.ctx, account):
            return [Change("service_account", "none", f"{account} exists")]
        return [Change("service_account", "create", f"create the service account {account}")]

    # artifact ----------------------------------------------------------------------------------
    def artifact(self, resources: DeploymentResources) -> StepResult:
        done = storage.ensure_artifact(self.ctx, self.spec.model)
        member = f"serviceAccount:{self.account}"
        granted = False
        if self.spec.previous.get("reader") != member:  # the live deployment already granted it: no read
            granted = storage.grant_reader(self.ctx, member)
        message = done + (f"; {self.account} may now read the bucket" if granted else "")
        return StepResult(
            message, {"model_uri": storage.model_uri(self.ctx, self.spec.model), "reader": member}
        )

    def plan_artifact(self) -> list[Change]:
        done = storage.ensure_artifact(self.ctx, self.spec.model, validate_only=True)
        changes = [Change("artifact", "create" if done.startswith("would") else "none", done)]
        if storage.grant_reader(self.ctx, f"serviceAccount:{self.account}", validate_only=True):
            changes.append(Change("artifact", "update", f"grant {self.account} read access to the bucket"))
        return changes

    # allowlist ---------------------------------------------------------------------------------
    def allowlist(self, resources: DeploymentResources) -> StepResult:
        endpoint = self.spec.endpoint
        message = armor.apply_allowlist(self.ctx, endpoint, self.spec.access.cidrs)
        return StepResult(message, {"security_policy": armor.policy_name(endpoint)})

    def plan_allowlist(self) -> list[Change]:
        ctx, cidrs = self.ctx, self.spec.access.cidrs
        name = armor.policy_name(self.spec.endpoint)
        policy = ctx.call(
            ctx.clients.compute("SecurityPoliciesClient").get,
            project=self.cfg.project,
            security_policy=name,
            what=f"Read {name}",
            accept=(gexc.NotFound,),
        )
        if policy is None:
            rules = armor.layout(ctx, cidrs, {armor.DEFAULT_PRIORITY})
            return [Change("allowlist", "create", f"create {name}: {len(rules)} allow rule(s), default deny")]
        adds, patches, removes, _ = armor.diff(ctx, policy, cidrs)
        if not (adds or patches or removes):
            return [Change("allowlist", "none", f"{name} already allows the {len(cidrs)} range(s)")]
        return [Change("allowlist", "update", f"{name}: add {adds}, update {patches}, remove {removes}")]

    # revision ----------------------------------------------------------------------------------
    def revision(self, resources: DeploymentResources) -> StepResult:
        try:
            found = run.deploy_revision(self.ctx, self.spec)
        except PermanentError as exc:
            raise self._while_the_account_propagates(exc, resources) from exc
        split = ", ".join(f"{t['revision']} {t['percent']}%" for t in found["traffic"])
        return StepResult(f"Deploying {found['revision']} (traffic: {split})", found)

    def _while_the_account_propagates(
        self, exc: PermanentError, resources: DeploymentResources
    ) -> RuntimeFailure:
        """Cloud Run refuses to run as an account made moments ago ("actAs denied ... or it may not
        exist") until the account reaches it, which takes minutes: wait, up to GCP_PROPAGATION_WAIT_SECONDS
        after the account was made, then say what is still missing."""
        made_at = resources.get("service_account_made_at")
        if made_at is None or not errors.is_act_as_denied(exc.__cause__):
            return exc
        waited = self.ctx.wall() - made_at
        if waited < self.cfg.propagation_wait:
            return Pending(
                f"Cloud Run does not see {self.account} yet ({waited:.0f} s after it was made); "
                "a new account takes a few minutes to reach every Google service.",
                retry_after=PROPAGATION_POLL_SECONDS,
            )
        return PermanentError(
            f"{exc} {waited:.0f} s after {self.account} was made, Cloud Run still may not act as it: "
            f"the worker needs roles/iam.serviceAccountUser on it (python manage.py gcp_doctor checks this)."
        )

    def plan_revision(self) -> list[Change]:
        service, validated = run.validate_revision(self.ctx, self.spec)
        split = ", ".join(f"{t.revision} {t.percent}%" for t in service.traffic)
        note = " (validated by Cloud Run)" if validated else ""
        detail = f"deploy revision {service.template.revision}, traffic {split}{note}"
        return [Change("revision", "update", detail)]

    def revision_ready(self, resources: DeploymentResources) -> StepResult:
        found = run.wait_revision(self.ctx, resources)
        return StepResult(f"{resources['revision']} is ready at {found['url']}", found)

    # load_balancer -----------------------------------------------------------------------------
    def load_balancer(self, resources: DeploymentResources) -> StepResult:
        previous, endpoint = self.spec.previous, self.spec.endpoint
        host = loadbalancer.hostname(self.ctx, endpoint)
        rule = loadbalancer.names(endpoint)["rule"]
        if previous.get("load_balancer") == rule and previous.get("lb_address"):
            found: DeploymentResources = {
                "load_balancer": previous["load_balancer"],
                "lb_address": previous["lb_address"],
                "url": f"https://{host}",
            }
            return StepResult(f"Reusing the load balancer at {found['lb_address']}", found)
        found, created = loadbalancer.ensure_chain(self.ctx, self.spec)
        made = ", ".join(created) or "nothing (all there)"
        return StepResult(f"Created {made}; point {host} (DNS A record) at {found['lb_address']}", found)

    def plan_load_balancer(self) -> list[Change]:
        missing = loadbalancer.missing(self.ctx, self.spec)
        if not missing:
            return [Change("load_balancer", "none", f"reuse the load balancer of {self.spec.endpoint}")]
        return [Change("load_balancer", "create", "create " + ", ".join(missing))]

    # invoker -----------------------------------------------------------------------------------
    def invoker(self, resources: DeploymentResources) -> StepResult:
        account = self.cfg.gateway_service_account
        member = f"serviceAccount:{account}"
        previous = self.spec.previous
        # A service of generation 1 was (re)created by this deploy: its policy is new, grant again.
        if (
            previous.get("invoker") == member
            and previous.get("service") == resources["service"]
            and resources.get("service_generation", 1) > 1
        ):
            return StepResult(f"{account} may invoke the service", {"invoker": member})
        if previous.get("invokers"):
            # The identity mode's invokers called the service itself: behind the gateway, only it may.
            iam.set_members(self.ctx, self.ctx.clients.run(), resources["service"], iam.INVOKER, [member])
            return StepResult(f"Only {account} may invoke the service now", {"invoker": member})
        changed = iam.grant(self.ctx, self.ctx.clients.run(), resources["service"], iam.INVOKER, member)
        verb = "may now invoke" if changed else "already may invoke"
        return StepResult(f"{account} {verb} the service", {"invoker": member})

    def plan_invoker(self) -> list[Change]:
        name = run.service_name(self.ctx, self.spec.endpoint, self.spec.resources.region)
        member = f"serviceAccount:{self.cfg.gateway_service_account}"
        try:
            needed = iam.grant(
                self.ctx, self.ctx.clients.run(), name, iam.INVOKER, member, validate_only=True
            )
        except RuntimeFailure:
            needed = True  # the service does not exist yet
        return [Change("invoker", "update" if needed else "none", f"{iam.INVOKER} for {member} on {name}")]

    # invokers (identity mode) -------------------------------------------------------------------
    def invokers(self, resources: DeploymentResources) -> StepResult:
        members = list(self.spec.access.identity.invokers) if self.spec.access.identity else []
        changed = iam.set_members(
            self.ctx, self.ctx.clients.run(), resources["service"], iam.INVOKER, members
        )
        said = ", ".join(members) or "nobody"
        verb = "may now call" if changed else "already may call"
        return StepResult(
            f"{said} {verb} the service (Cloud Run checks their ID tokens)", {"invokers": members}
        )

    def plan_invokers(self) -> list[Change]:
        name = run.service_name(self.ctx, self.spec.endpoint, self.spec.resources.region)
        members = list(self.spec.access.identity.invokers) if self.spec.access.identity else []
        try:
            needed = iam.set_members(
                self.ctx, self.ctx.clients.run(), name, iam.INVOKER, members, validate_only=True
            )
        except RuntimeFailure:
            needed = True  # the service does not exist yet
        detail = f"{iam.INVOKER} on {name}: exactly {', '.join(members) or 'nobody'}"
        return [Change("invokers", "update" if needed else "none", detail)]

    # gateway_config ----------------------------------------------------------------------------
    def gateway_config(self, resources: DeploymentResources) -> StepResult:
        made = gateway.create_config(self.ctx, self.spec, resources)
        return StepResult(f"Creating API config {made['api_config_id']}", made)

    def plan_gateway_config(self) -> list[Change]:
        changes = []
        if self._read_api() is None:
            api = gateway.api_name(self.ctx, self.spec.endpoint)
            changes.append(Change("gateway_config", "create", f"create API {api}"))
        config = gateway.config_id(self.spec)
        routes = "routes: POST /predict, GET /v1/model"
        changes.append(Change("gateway_config", "create", f"create API config {config} ({routes})"))
        return changes

    def _read_api(self) -> gw.Api | None:
        """The endpoint's API, None while it does not exist (the config step creates it)."""
        name = gateway.api_name(self.ctx, self.spec.endpoint)
        return self.ctx.call(
            self.ctx.clients.gateway().get_api, name=name, what=f"Read {name}", accept=(gexc.NotFound,)
        )

    # managed_service ---------------------------------------------------------------------------
    def managed_service(self, resources: DeploymentResources) -> StepResult:
        service = resources["managed_service"]
        if self.spec.previous.get("managed_service_enabled") == service:
            return StepResult(f"{service} is enabled", {"managed_service_enabled": service})
        started = gateway.start_enable(self.ctx, service)
        message = f"Enabling {service}" if started else f"{service} is enabled"
        return StepResult(message, {**started, "managed_service_enabled": service})

    def managed_service_ready(self, resources: DeploymentResources) -> StepResult:
        gateway.wait_enabled(self.ctx, resources["managed_service"], resources)
        return StepResult(f"{resources['managed_service']} is enabled")

    def plan_managed_service(self) -> list[Change]:
        api = self._read_api()
        if api is None:
            return [Change("managed_service", "update", "enable the new API's managed service")]
        name = f"projects/{self.cfg.project}/services/{api.managed_service}"
        state = self.ctx.call(
            self.ctx.clients.usage().get_service, request={"name": name}, what=f"Read {name}"
        )
        if state.state != su.State.ENABLED:
            return [Change("managed_service", "update", f"enable {api.managed_service}")]
        return []

    # gateway_config_ready ----------------------------------------------------------------------
    def gateway_config_ready(self, resources: DeploymentResources) -> StepResult:
        gateway.wait_config(self.ctx, resources)
        return StepResult(f"API config {resources['api_config_id']} is active")

    # gateway -----------------------------------------------------------------------------------
    def gateway(self, resources: DeploymentResources) -> StepResult:
        made = gateway.point_gateway(self.ctx, self.spec, resources["api_config"])
        return StepResult(f"Pointing gateway {self.spec.endpoint} at {resources['api_config_id']}", made)

    def plan_gateway(self) -> list[Change]:
        ctx, endpoint = self.ctx, self.spec.endpoint
        name = gateway.gateway_name(ctx, endpoint)
        current = ctx.call(
            ctx.clients.gateway().get_gateway, name=name, what=f"Read {name}", accept=(gexc.NotFound,)
        )
        config = gateway.config_id(self.spec)
        if current is None:
            return [Change("gateway", "create", f"create gateway {name} on {config}")]
        was = current.api_config.rsplit("/", 1)[-1]
        return [Change("gateway", "update", f"point gateway {endpoint} from {was} to {config}")]

    def gateway_ready(self, resources: DeploymentResources) -> StepResult:
        found = gateway.wait_gateway(self.ctx, resources)
        return StepResult(f"Gateway serves {resources['api_config_id']} at {found['gateway_url']}", found)

    # prune_configs -----------------------------------------------------------------------------
    def prune_configs(self, resources: DeploymentResources) -> StepResult:
        doomed = gateway.prune_configs(self.ctx, self.spec, resources["api_config"])
        pruned = sorted({*resources.get("pruned_configs", ()), *doomed})  # a rerun keeps the first's
        message = (
            f"Deleting {', '.join(c.rsplit('/', 1)[-1] for c in doomed)}" if doomed else "None to delete"
        )
        return StepResult(message, {"pruned_configs": pruned})

    # key_restrictions --------------------------------------------------------------------------
    def key_restrictions(self, resources: DeploymentResources) -> StepResult:
        cidrs = keys.allowed_ips(self.spec.access.cidrs, True)
        changed = keys.sync_allowed_ips(self.ctx, self.spec.endpoint, cidrs)
        return StepResult(f"{changed} key(s) updated to the allowlist")

    # rollback ----------------------------------------------------------------------------------
    def traffic(self, resources: DeploymentResources) -> StepResult:
        target = self.spec.rollback_to
        kept = DeploymentResources()
        for key in ROLLBACK_KEPT:
            if key in target:
                kept[key] = target[key]
        spec = self.spec
        service = target.get("service") or run.service_name(self.ctx, spec.endpoint, spec.resources.region)
        moved = run.set_traffic(self.ctx, service, [(target["revision"], 100)])
        return StepResult(
            f"Moving all traffic to {target['revision']}", {**kept, "service": service, **moved}
        )

    def traffic_ready(self, resources: DeploymentResources) -> StepResult:
        found = run.wait_traffic(self.ctx, resources)
        return StepResult(f"{resources['revision']} serves all traffic again", found)
