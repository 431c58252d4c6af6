"""The `gcp` runtime: endpoints on Cloud Run, behind API Gateway (keys) or Cloud Armor (allowlist).

    RUNTIME=gcp GCP_PROJECT=... GCP_SERVING_IMAGE=... GCP_ARTIFACT_BUCKET=... \\
    GCP_GATEWAY_SERVICE_ACCOUNT=... GCP_LB_DOMAIN=...  (see the README's configuration table)

The steps of a deploy, each with its plan, are in `worker.runtimes.gcp.steps`; those that stop,
start and delete an endpoint in `worker.runtimes.gcp.lifecycle`; this module keeps what changes a
live endpoint outside a deploy: its access policy and its keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from worker.runtimes.base import (
    AccessPolicy,
    DeploySpec,
    HttpsFront,
    IssuedKey,
    KeySpec,
    PermanentError,
    Runtime,
    Step,
    TeardownSpec,
)
from worker.runtimes.gcp import armor, gateway, iam, keys, loadbalancer, logs, monitoring, run
from worker.runtimes.gcp.clients import Context
from worker.runtimes.gcp.config import GcpConfig
from worker.runtimes.gcp.lifecycle import TeardownSteps, scaling_steps
from worker.runtimes.gcp.steps import DeploySteps
from worker.runtimes.logs import LogPage, LogQuery
from worker.runtimes.resources import DeploymentResources
from worker.runtimes.traffic import Traffic, check_window

#: Who issues Google's ID tokens and where its signing keys are (OpenID Connect discovery at
#: https://accounts.google.com/.well-known/openid-configuration).
GOOGLE_ISSUER = "https://accounts.google.com"
GOOGLE_JWKS = "https://www.googleapis.com/oauth2/v3/certs"
#: What each access mode needs in front of the Cloud Run service, and how the page names it.
FRONTS = {
    "api_key": "gateway",
    "both": "gateway",
    "ip_allowlist": "load_balancer",
    "open": "none",
    "identity": "iam",
}
FRONT_NAMES = {
    "gateway": "API Gateway",
    "load_balancer": "an HTTPS load balancer with Cloud Armor",
    "none": "nothing (the service's own URL is public)",
    "iam": "nothing but Cloud Run's own IAM check (the caller's Google ID token)",
}
MODE_NAMES = {
    "api_key": "API key",
    "both": "API key and IP allowlist",
    "ip_allowlist": "IP allowlist",
    "open": "open",
    "identity": "identity",
}
#: The mode a live front enforces when the endpoint asks for one it cannot: the nearest that is no
#: less strict (a gateway asked for an allowlist restricts each key to it).
KEPT_ON = {"gateway": {"ip_allowlist": "both", "open": "api_key"}, "load_balancer": {}, "none": {}, "iam": {}}
#: The mode each live front enforces by itself.
FRONT_MODES = {"gateway": "api_key", "load_balancer": "ip_allowlist", "none": "open", "iam": "identity"}


class GcpRuntime(Runtime):
    name = "gcp"
    supports_canary = True  # traffic is split by revision name
    enforcers = {
        "keys": "API Gateway, in front of a Cloud Run service only the gateway may invoke",
        "addresses": "Cloud Armor on the HTTPS load balancer (with keys too, each key's allowed IPs)",
        "identity": "Cloud Run's IAM check, before the request reaches the service",
    }

    # Identity mode: Cloud Run's own IAM check takes Google-signed ID tokens only, for the service's
    # URL (or a custom audience), from the principals holding roles/run.invoker on the service.
    identity_check = "platform"
    identity_defaults = {"identity_issuer": GOOGLE_ISSUER, "identity_jwks_url": GOOGLE_JWKS}

    # Cloud Logging allows 60 entries.list calls a minute per project: one viewer polls 4 a minute.
    log_poll_seconds = 15.0
    log_cache_seconds = 5.0

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

    def deploy_steps(self, spec: DeploySpec) -> list[Step]:
        steps = DeploySteps(self.ctx, spec)
        return steps.rollback() if spec.rollback_to.get("revision") else steps.all()

    def read_log(self, endpoint: str, live: DeploymentResources | None, query: LogQuery) -> LogPage:
        """The live revision's entries in Cloud Logging (see `worker.runtimes.gcp.logs`)."""
        revision = (live or {}).get("revision")
        if not revision:
            return LogPage(revision=None)
        return logs.read_log(self.ctx, endpoint, revision, query)

    def traffic(
        self, endpoint: str, live: DeploymentResources | None, *, start: datetime, end: datetime, step: int
    ) -> Traffic:
        """Cloud Run's own request metrics from Cloud Monitoring (see `worker.runtimes.gcp.monitoring`)."""
        check_window(start, end, step)
        return monitoring.traffic(self.ctx, endpoint, live, start=start, end=end, step=step)

    # --- progressive deploys ----------------------------------------------------------------

    def set_canary_share(self, spec: DeploySpec, percent: int) -> str:
        """Cloud Run's traffic by revision name: the canary `percent`, the revision it shares with
        the rest (none at 100)."""
        revision, previous = run.revision_id(spec), spec.previous.get("revision")
        name = spec.previous.get("service") or run.service_name(
            self.ctx, spec.endpoint, spec.resources.region
        )
        targets = [(revision, percent)]
        if percent < 100:
            if not previous or previous == revision:
                raise PermanentError(f"{revision} shares the traffic with no other revision")
            targets.append((previous, 100 - percent))
        return f"{name} serves {run.split_traffic(self.ctx, name, targets)}."

    def end_canary(self, spec: DeploySpec) -> str:
        """Every request back to the revision the canary shared with; Cloud Run keeps the canary's
        revision, serving nothing (it scales to zero by itself)."""
        previous = spec.previous.get("revision")
        if not previous:
            raise PermanentError(f"{run.revision_id(spec)} shares the traffic with no other revision")
        name = spec.previous.get("service") or run.service_name(
            self.ctx, spec.endpoint, spec.resources.region
        )
        return f"{name} serves {run.split_traffic(self.ctx, name, [(previous, 100)])}."

    # --- access and keys --------------------------------------------------------------------

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
        elif access.mode in run.IAM_MODES and access.live_target:
            # The invokers change at once; issuer and audience are Cloud Run's (see build_service).
            invokers = list(access.identity.invokers) if access.identity else []
            iam.set_members(self.ctx, self.ctx.clients.run(), access.live_target, iam.INVOKER, invokers)

    def access_for_live(
        self, live: DeploymentResources | None, access: AccessPolicy
    ) -> tuple[AccessPolicy, str]:
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
        elif "invokers" in live:
            front = "iam"
        else:
            front = "none"
        wanted = FRONTS[access.mode]
        if wanted == front:
            return replace(access, live_target=live.get("service", "")), ""
        kept = KEPT_ON[front].get(access.mode, FRONT_MODES[front])
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

    # --- stop, start, delete --------------------------------------------------------------------

    def stop_steps(self, spec: DeploySpec) -> list[Step]:
        """Scale the service to no instance; its revisions, traffic, gateway, keys, Cloud Armor and
        load balancer stay, so `start_steps` serves on the same URL."""
        return scaling_steps(self.ctx, spec, stopped=True)

    def start_steps(self, spec: DeploySpec) -> list[Step]:
        """Put the service back on automatic scaling, where the revision's min instances apply."""
        return scaling_steps(self.ctx, spec, stopped=False)

    def delete_steps(self, spec: TeardownSpec) -> list[Step]:
        return TeardownSteps(self.ctx, spec).all()

    def https_front(self, endpoint: str, live: DeploymentResources) -> HttpsFront | None:
        return loadbalancer.front(self.ctx, endpoint, live)

    def replace_certificate(self, endpoint: str) -> str:
        return loadbalancer.replace_certificate(self.ctx, endpoint)

    def ensure_serving(self, spec: DeploySpec) -> bool:
        """Cloud Run keeps ready revisions serving by itself: nothing to start, no call to make."""
        return False
