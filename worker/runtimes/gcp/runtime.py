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

from worker.runtimes.base import (
    AccessPolicy,
    DeploySpec,
    IssuedKey,
    KeySpec,
    Runtime,
    Step,
    StepResult,
)
from worker.runtimes.gcp import iam, run, storage
from worker.runtimes.gcp.clients import Context
from worker.runtimes.gcp.config import GcpConfig


class GcpRuntime(Runtime):
    name = "gcp"

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
        mode = spec.access.mode
        steps = [
            Step("artifact", "Copy the model artifact to Cloud Storage", lambda r: self._artifact(spec)),
            Step("revision", "Deploy the Cloud Run revision", lambda r: self._revision(spec)),
            Step("revision_ready", "Wait for the revision to be ready", lambda r: self._revision_ready(r)),
        ]
        if mode in run.KEY_MODES:
            steps.append(Step("invoker", "Let the gateway invoke the service", lambda r: self._invoker(r)))
        return steps

    def _artifact(self, spec: DeploySpec) -> StepResult:
        done = storage.ensure_artifact(self.ctx, spec.model)
        account = self.cfg.service_account_for(spec.endpoint)
        granted = storage.grant_reader(self.ctx, f"serviceAccount:{account}")
        message = done + (f"; {account} may now read the bucket" if granted else "")
        return StepResult(message, {"model_uri": storage.model_uri(self.ctx, spec.model)})

    def _revision(self, spec: DeploySpec) -> StepResult:
        resources = run.deploy_revision(self.ctx, spec)
        split = ", ".join(f"{t['revision']} {t['percent']}%" for t in resources["traffic"])
        return StepResult(f"Deploying {resources['revision']} (traffic: {split})", resources)

    def _revision_ready(self, resources: dict) -> StepResult:
        found = run.wait_revision(self.ctx, resources)
        return StepResult(f"{resources['revision']} is ready at {found['url']}", found)

    def _invoker(self, resources: dict) -> StepResult:
        member = f"serviceAccount:{self.cfg.gateway_service_account}"
        changed = iam.grant(self.ctx, self.ctx.clients.run(), resources["service"], iam.INVOKER, member)
        verb = "may now invoke" if changed else "already may invoke"
        return StepResult(f"{self.cfg.gateway_service_account} {verb} the service")

    # --- access, keys, stop --------------------------------------------------------------------

    def apply_access(self, endpoint: str, access: AccessPolicy) -> None:
        raise NotImplementedError("apply_access lands with the API Keys and Cloud Armor parts")

    def issue_key(self, spec: KeySpec) -> IssuedKey:
        raise NotImplementedError("issue_key lands with the API Keys part")

    def revoke_key(self, endpoint: str, key_name: str) -> None:
        raise NotImplementedError("revoke_key lands with the API Keys part")

    def stop_endpoint(self, endpoint: str) -> None:
        raise NotImplementedError("stop_endpoint lands with the gateway part")

    def ensure_serving(self, spec: DeploySpec) -> bool:
        """Cloud Run keeps ready revisions serving by itself: nothing to start, no call to make."""
        return False
