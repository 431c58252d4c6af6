"""The gcp runtime's stop, start and delete steps: a live endpoint taken off and back, or removed.

Stop scales the Cloud Run service to no instance (service-level manual scaling, 0 instances) and
keeps everything else: the revisions, the traffic, the gateway, the keys, Cloud Armor and the load
balancer, so start (automatic scaling again) serves on the same URL.

Delete removes what the portal made for the endpoint, dependents first, one kind per step:

    gateway -> its API configs -> the endpoint's API keys -> the API (its managed service goes too)
    -> the load balancer (forwarding rule first) -> the Cloud Armor policy
    -> the Cloud Run service (only one labelled managed-by the portal)
    -> the service account's bucket read grant -> the service account (only if the portal made it)
    -> the artifacts no other endpoint uses

A Google write that is a long-running operation (API Gateway, API Keys, Cloud Run) is started by
one step, which records the operation names (`deletions`), and waited for by the next, so a
worker that dies in between resumes by polling. Compute and IAM deletes are waited for in their
step; run again, they meet NOT_FOUND for what is gone. Anything already gone counts as deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from google.api_core import exceptions as gexc

from worker.runtimes.base import Change, DeploySpec, Step, StepResult, TeardownSpec
from worker.runtimes.gcp import armor, gateway, loadbalancer, run, service_accounts, storage
from worker.runtimes.gcp.clients import Context
from worker.runtimes.gcp.operations import operation_result
from worker.runtimes.resources import DeploymentResources, StartedOperations

# --- stop and start ----------------------------------------------------------------------------


def scaling_steps(ctx: Context, spec: DeploySpec, *, stopped: bool) -> list[Step]:
    """Stop (`stopped`) or start the live deployment's service: the write, then its wait."""
    name = run.service_name(ctx, spec.endpoint, spec.resources.region)
    verb, done = ("stop", "stopped") if stopped else ("start", "started")

    def change(resources: DeploymentResources) -> StepResult:
        made = run.set_scaling(ctx, name, stopped=stopped)
        return StepResult(f"{'Scaling' if stopped else 'Starting'} {name}", made)

    def wait(resources: DeploymentResources) -> StepResult:
        service = run.wait_scaling(ctx, resources, stopped=stopped)
        split = ", ".join(f"{t.revision} {t.percent}%" for t in service.traffic_statuses)
        if stopped:
            return StepResult(f"{name} runs no instance; its URL and traffic ({split}) are kept")
        return StepResult(f"{name} scales automatically again (traffic: {split})")

    def plan() -> list[Change]:
        service = ctx.call(ctx.clients.run().get_service, name=name, what=f"Read {name}")
        if run.is_stopped(service) == stopped:
            return [Change(f"{verb}_service", "none", f"{name} is already {done}")]
        if stopped:
            detail = f"scale {name} to 0 instances (manual scaling); the gateway, keys and URL stay"
        else:
            detail = f"put {name} back on automatic scaling (the revision's min and max instances)"
        return [Change(f"{verb}_service", "update", detail)]

    return [
        Step(f"{verb}_service", f"{verb.capitalize()} the Cloud Run service", change, plan),
        Step(f"service_{done}", f"Wait for the service to be {done}", wait),
    ]


# --- delete ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deletion:
    """One kind of resource deleted by a long-running operation: `found()` reads which exist, and
    `client()`'s `method` deletes one by name."""

    step: str
    noun: str
    client: Callable[[], Any]
    method: str
    found: Callable[[], list[str]]


class TeardownSteps:
    """The steps of one endpoint's delete; each may run again and finds what its earlier run did."""

    def __init__(self, ctx: Context, spec: TeardownSpec):
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.spec = spec

    def all(self) -> list[Step]:
        gateways, keys, runs = self.ctx.clients.gateway, self.ctx.clients.keys, self.ctx.clients.run
        steps = self._deletion(
            Deletion("delete_gateway", "gateway", gateways, "delete_gateway", self._gateways)
        )
        steps += self._deletion(
            Deletion("delete_api_configs", "API config", gateways, "delete_api_config", self._configs)
        )
        steps += self._deletion(Deletion("delete_keys", "API key", keys, "delete_key", self._keys))
        steps += self._deletion(Deletion("delete_api", "API", gateways, "delete_api", self._apis))
        steps += [
            Step("delete_load_balancer", "Delete the HTTPS load balancer", self.lb, self.plan_lb),
            Step("delete_security_policy", "Delete the Cloud Armor policy", self.policy, self.plan_policy),
        ]
        steps += self._deletion(
            Deletion("delete_service", "Cloud Run service", runs, "delete_service", self._services)
        )
        steps += [
            Step("revoke_bucket_read", "Take back the bucket read grant", self.revoke, self.plan_revoke),
            Step("delete_service_account", "Delete the service account", self.accounts, self.plan_accounts),
            Step("delete_artifacts", "Delete the unused artifacts", self.artifacts, self.plan_artifacts),
        ]
        return steps

    # what the endpoint's deployments made ------------------------------------------------------
    def _recorded(self, key: Literal["service", "gateway", "api"]) -> set[str]:
        return {made[key] for made in self.spec.made if made.get(key)}

    def _regions(self) -> list[str]:
        """Every region the endpoint's service was deployed to (its NEGs are there too)."""
        regions = {name.split("/")[3] for name in self._recorded("service")} | {self.spec.region}
        return sorted(regions)

    def _accounts(self) -> list[str]:
        """The service accounts the portal created for the endpoint (never one it found there)."""
        return sorted(
            {made["service_account"] for made in self.spec.made if made.get("service_account_created")}
        )

    # long-running deletions: the step that starts them, and the one that waits ------------------
    def _deletion(self, kind: Deletion) -> list[Step]:
        def start(resources: DeploymentResources) -> StepResult:
            started = self.ctx.wall()
            names, operations = kind.found(), []
            for name in names:
                operation = self.ctx.call(
                    getattr(kind.client(), kind.method),
                    name=name,
                    what=f"Delete {name}",
                    accept=(gexc.NotFound,),
                )
                if operation is not None:
                    operations.append(operation.operation.name)
            this: StartedOperations = {"names": operations, "started": started}
            deletions = {**resources.get("deletions", {}), kind.step: this}
            message = f"Deleting {', '.join(names)}" if names else f"No {kind.noun} was left"
            return StepResult(message, {"deletions": deletions})

        def wait(resources: DeploymentResources) -> StepResult:
            started = resources.get("deletions", {}).get(kind.step, {"names": [], "started": 0.0})
            for name in started["names"]:
                operation_result(
                    self.ctx, kind.client(), name, what=f"Delete ({kind.noun})", started=started["started"]
                )
            return StepResult(f"{len(started['names'])} {kind.noun}(s) deleted")

        def plan() -> list[Change]:
            names = kind.found()
            if not names:
                return [Change(kind.step, "none", f"no {kind.noun} left")]
            return [Change(kind.step, "delete", f"delete {kind.noun} {name}") for name in names]

        done = kind.step.removeprefix("delete_") + "_deleted"
        return [
            Step(kind.step, f"Delete the {kind.noun}s", start, plan),
            Step(done, f"Wait for the {kind.noun}s to be deleted", wait),
        ]

    def _existing(self, getter: Callable, names: set[str]) -> list[str]:
        return [
            name
            for name in sorted(names)
            if self.ctx.call(getter, name=name, what=f"Read {name}", accept=(gexc.NotFound,)) is not None
        ]

    def _gateways(self) -> list[str]:
        names = self._recorded("gateway") | {gateway.gateway_name(self.ctx, self.spec.endpoint)}
        return self._existing(self.ctx.clients.gateway().get_gateway, names)

    def _api_names(self) -> set[str]:
        return self._recorded("api") | {gateway.api_name(self.ctx, self.spec.endpoint)}

    def _configs(self) -> list[str]:
        return [config for api in sorted(self._api_names()) for config in gateway.config_names(self.ctx, api)]

    def _apis(self) -> list[str]:
        return self._existing(self.ctx.clients.gateway().get_api, self._api_names())

    def _keys(self) -> list[str]:
        """The endpoint's keys not deleted yet (a deleted key is kept, marked, for 30 days)."""
        client = self.ctx.clients.keys()
        live = []
        for name in self.spec.key_names:
            key = self.ctx.call(
                client.get_key, name=name, what=f"Read API key {name}", accept=(gexc.NotFound,)
            )
            if key is not None and not key.delete_time:
                live.append(name)
        return live

    def _services(self) -> list[str]:
        names = self._recorded("service") | {
            run.service_name(self.ctx, self.spec.endpoint, region) for region in self._regions()
        }
        return [name for name in sorted(names) if run.portal_service(self.ctx, name) is not None]

    # load balancer and Cloud Armor (Compute: waited for in the step) ----------------------------
    def lb(self, resources: DeploymentResources) -> StepResult:
        deleted = loadbalancer.delete_chain(self.ctx, self.spec.endpoint, self._regions())
        return StepResult(f"Deleted {', '.join(deleted)}" if deleted else "No load balancer was left")

    def plan_lb(self) -> list[Change]:
        present = loadbalancer.present(self.ctx, self.spec.endpoint, self._regions())
        if not present:
            return [Change("delete_load_balancer", "none", "no load balancer left")]
        return [Change("delete_load_balancer", "delete", "delete " + ", ".join(present))]

    def policy(self, resources: DeploymentResources) -> StepResult:
        name = armor.policy_name(self.spec.endpoint)
        deleted = armor.delete_policy(self.ctx, self.spec.endpoint)
        return StepResult(f"Deleted {name}" if deleted else f"{name} was already gone")

    def plan_policy(self) -> list[Change]:
        name = armor.policy_name(self.spec.endpoint)
        policy = self.ctx.call(
            self.ctx.clients.compute("SecurityPoliciesClient").get,
            project=self.cfg.project,
            security_policy=name,
            what=f"Read {name}",
            accept=(gexc.NotFound,),
        )
        if policy is None:
            return [Change("delete_security_policy", "none", f"{name} is gone")]
        return [Change("delete_security_policy", "delete", f"delete security policy {name}")]

    # the service account and its grant (only one the portal made) -------------------------------
    def revoke(self, resources: DeploymentResources) -> StepResult:
        revoked = [
            account
            for account in self._accounts()
            if storage.revoke_reader(self.ctx, f"serviceAccount:{account}")
        ]
        return StepResult(
            f"{', '.join(revoked)} may no longer read the bucket" if revoked else "No grant was left"
        )

    def plan_revoke(self) -> list[Change]:
        return [
            Change("revoke_bucket_read", "update", f"take back {account}'s read access to the bucket")
            for account in self._accounts()
            if storage.revoke_reader(self.ctx, f"serviceAccount:{account}", validate_only=True)
        ] or [Change("revoke_bucket_read", "none", "no grant to take back")]

    def accounts(self, resources: DeploymentResources) -> StepResult:
        deleted = [account for account in self._accounts() if service_accounts.delete(self.ctx, account)]
        if deleted:
            return StepResult(f"Deleted {', '.join(deleted)}")
        return StepResult("No service account the portal made was left")

    def plan_accounts(self) -> list[Change]:
        return [
            Change("delete_service_account", "delete", f"delete the service account {account}")
            for account in self._accounts()
            if service_accounts.exists(self.ctx, account)
        ] or [Change("delete_service_account", "none", "no service account the portal made is left")]

    # artifacts ---------------------------------------------------------------------------------
    def artifacts(self, resources: DeploymentResources) -> StepResult:
        deleted = [model for model in self.spec.artifacts if storage.delete_artifact(self.ctx, model)]
        uris = ", ".join(storage.model_uri(self.ctx, model) for model in deleted)
        return StepResult(f"Deleted {uris}" if deleted else "No artifact was left")

    def plan_artifacts(self) -> list[Change]:
        return [
            Change("delete_artifacts", "delete", f"delete {storage.model_uri(self.ctx, model)}")
            for model in self.spec.artifacts
            if storage.artifact_exists(self.ctx, model)
        ] or [Change("delete_artifacts", "none", "no artifact left")]
