"""What a deploy's steps record about what they made: the one place its keys are written down.

Each step returns some of these keys (`StepResult.resources`); the portal merges them into the
deployment's `resources` (JSON), hands them to the later steps, to a rollback (`rollback_to`) and
to the next deploy (`previous`). The portal itself reads only the first group. A new runtime adds
its own keys here, so a misspelt key is a type error, not a silent miss.
"""

from __future__ import annotations

from typing import TypedDict


class TrafficShare(TypedDict):
    revision: str
    percent: int


class StartedOperations(TypedDict):
    names: list[str]  # the long-running operations a step started
    started: float  # wall time they were started


class DeploymentResources(TypedDict, total=False):
    # Read by the portal.
    url: str  # where callers reach the endpoint once this deployment is live
    gateway_url: str  # the key-checking front's address, when the endpoint has one
    revision: str  # the runtime's name for what serves this deployment (see `revision_name`)
    previous_revision: str | None  # what served the endpoint before this deployment
    api_config: str  # the front's config this deployment serves through, when it has one
    pruned_configs: list[str]  # configs this deployment deleted: a rollback to one that used them is refused

    # local: the endpoint's stable port.
    port: int

    # gcp: Cloud Run.
    service_account: str  # the e-mail the revision runs as
    service_account_created: bool  # the portal made that account (so an endpoint's delete removes it)
    service_account_made_at: float  # wall time this deployment made it (it takes minutes to propagate)
    model_uri: str  # gs:// address of the artifact
    reader: str  # the IAM member granted read access to the bucket
    service: str  # projects/.../services/...
    service_generation: int
    run_url: str  # the service's own run.app address
    run_operation: str
    run_operation_started: float
    traffic: list[TrafficShare]
    invoker: str  # the member allowed to invoke the service (the gateway's account)
    invokers: list[str]  # the identity mode's members of roles/run.invoker (Cloud Run checks their tokens)
    # gcp: API Gateway.
    api: str
    managed_service: str
    managed_service_enabled: str
    enable_operation: str  # the managed service's enable, to poll
    enable_operation_started: float
    api_config_id: str
    config_operation: str
    config_operation_started: float
    gateway: str
    gateway_operation: str
    gateway_operation_started: float
    # gcp: Cloud Armor and the HTTPS load balancer.
    security_policy: str
    load_balancer: str
    lb_address: str
    # kubernetes: when the latest rollout (or scaling) was written, and when the Deployment was deleted.
    rollout_started: float
    deleted_at: float

    # gcp: an endpoint's delete.
    deletions: dict[str, StartedOperations]  # the delete operations each step started, by step name
