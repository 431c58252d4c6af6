"""The runtime interface: where deployed model versions run, in the portal's own words.

A runtime takes and returns the small frozen dataclasses below, never SDK objects, and raises
`PermanentError` (record it, show it, don't retry) or `TransientError` (retry with backoff).
Every call is create-or-update by a fixed name, so repeating one is safe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from worker.runtimes.logs import LogPage, LogQuery
from worker.runtimes.resources import DeploymentResources
from worker.runtimes.traffic import Traffic, TrafficSample


class RuntimeFailure(Exception):
    """Base for runtime failures; the message is shown to admins as is."""


class PermanentError(RuntimeFailure):
    """Retrying will not help: bad request, no permission, a revision that never gets ready."""


class TransientError(RuntimeFailure):
    """Busy or unreachable: the same call may pass later."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Pending(TransientError):
    """The cloud is still working on what a step started: check again later.

    Waiting is not failing, so a task retries a pending step without spending a retry; the runtime
    bounds the wait itself (an operation deadline) and raises PermanentError past it.
    """


@dataclass(frozen=True)
class KeyRecord:
    """A key as the access check sees it: never the secret, only its hash."""

    prefix: str
    key_hash: str
    expires_at: str | None = None  # ISO 8601, UTC
    revoked: bool = False


@dataclass(frozen=True)
class IdentityPolicy:
    """What a caller's bearer token must carry in the identity mode, and (where the platform checks
    tokens itself) who may call."""

    issuer: str
    audience: str  # "" on a platform that checks tokens: the service's own URL
    jwks_url: str
    claim_name: str = ""
    claim_value: str = ""
    invokers: tuple[str, ...] = ()  # IAM principals: "user:a@example.com", "serviceAccount:..."

    def as_json(self) -> dict:
        """The access file's `identity` object (what serving.identity reads)."""
        claim = {"name": self.claim_name, "value": self.claim_value} if self.claim_name else None
        return {"issuer": self.issuer, "audience": self.audience, "jwks_url": self.jwks_url, "claim": claim}


@dataclass(frozen=True)
class AccessPolicy:
    """Who may call an endpoint: its mode, its keys and its allowlisted CIDRs, or its identity policy."""

    mode: str  # api_key | ip_allowlist | both | open | identity
    keys: tuple[KeyRecord, ...] = ()
    cidrs: tuple[str, ...] = ()
    identity: IdentityPolicy | None = None  # in the identity mode
    # The runtime's own name for what a live deployment applies the policy to (set by
    # `access_for_live` where `apply_access` needs it: the Cloud Run service).
    live_target: str = ""

    def as_json(self) -> dict:
        identity = {"identity": self.identity.as_json()} if self.identity is not None else {}
        return {
            **identity,
            "mode": self.mode,
            "keys": [
                {
                    "prefix": key.prefix,
                    "hash": key.key_hash,
                    "expires_at": key.expires_at,
                    "revoked": key.revoked,
                }
                for key in self.keys
            ],
            "cidrs": list(self.cidrs),
        }


@dataclass(frozen=True)
class Resources:
    region: str = "us-central1"
    cpu: str = "1"
    memory: str = "512Mi"
    min_instances: int = 0
    max_instances: int = 3
    concurrency: int = 80
    timeout_seconds: int = 60


@dataclass(frozen=True)
class ModelSpec:
    """The model version a revision serves: its artifact and what serving needs to know."""

    name: str
    version: int
    artifact_path: str
    sha256: str
    format: str
    input_schema: tuple = ()
    classes: tuple = ()
    label_map: dict = field(default_factory=dict)
    trusted_types: tuple = ()
    # An ONNX form's linear weights, read by the portal so the serving-onnx image needs no `onnx`.
    linear_kernel: dict | None = None

    def meta(self) -> dict:
        """The SERVING_MODEL_META document the serving container reads."""
        return {
            **({"linear_kernel": self.linear_kernel} if self.linear_kernel else {}),
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "format": self.format,
            "schema": list(self.input_schema),
            "classes": list(self.classes),
            "label_map": dict(self.label_map),
            "trusted_types": list(self.trusted_types),
        }


@dataclass(frozen=True)
class DeploySpec:
    """Everything a deploy needs, read from the database once, before any step runs."""

    endpoint: str
    deployment_id: int
    model: ModelSpec
    resources: Resources
    access: AccessPolicy
    traffic_percent: int = 100
    # What the live deployment's steps recorded (empty when nothing is live).
    previous: DeploymentResources = field(default_factory=lambda: DeploymentResources())
    # What the steps of the deployment this one rolls back to recorded (empty unless a rollback).
    rollback_to: DeploymentResources = field(default_factory=lambda: DeploymentResources())

    @property
    def revision(self) -> str:
        return revision_name(self.endpoint, self.deployment_id)


def revision_name(base: str, deployment_id: int) -> str:
    """The name of what serves a deployment: `<base>-d<id>` (base: the endpoint, or a name the
    runtime derived from it). `deployment_number` reads the id back."""
    return f"{base}-d{deployment_id}"


def deployment_number(revision: str) -> int:
    """The deployment id in a name made by `revision_name` (0 when there is none)."""
    _, _, number = revision.rpartition("-d")
    return int(number) if number.isdigit() else 0


@dataclass(frozen=True)
class TeardownSpec:
    """Everything an endpoint's delete needs: what every one of its deployments recorded, its keys,
    and the artifacts no other endpoint uses."""

    endpoint: str
    region: str = "us-central1"
    # What each of the endpoint's deployments recorded, oldest first (steps may have half-run).
    made: tuple[DeploymentResources, ...] = ()
    # The runtime's names of the endpoint's keys (revoked or not).
    key_names: tuple[str, ...] = ()
    # The artifacts of the endpoint's versions that no other endpoint's deployment uses.
    artifacts: tuple[ModelSpec, ...] = ()


@dataclass(frozen=True)
class Change:
    """One thing a deploy would do, as plan mode reports it (nothing is done)."""

    step: str
    action: str  # create | update | delete | none | error
    detail: str


@dataclass(frozen=True)
class StepResult:
    message: str
    # Merged into the deployment's resources and handed to the steps after this one.
    resources: DeploymentResources = field(default_factory=lambda: DeploymentResources())


@dataclass(frozen=True)
class Step:
    """One idempotent step: `run` gets the resources recorded so far and does the work; `plan`
    says what `run` would change, reading only (None for a step that only waits or checks)."""

    name: str
    title: str
    run: Callable[[DeploymentResources], StepResult]
    plan: Callable[[], list[Change]] | None = None


@dataclass(frozen=True)
class HttpsFront:
    """An HTTPS address the runtime put in front of an endpoint under a name the team owns: the
    DNS record that name needs, and the managed certificate, which is issued once it resolves."""

    host: str  # the name callers use
    address: str  # where its DNS A record must point
    certificate: str  # PROVISIONING | ACTIVE | FAILED_NOT_VISIBLE | ... (the provider's own words)
    detail: str = ""  # why, where the provider says (per-domain status)

    @property
    def active(self) -> bool:
        return self.certificate == "ACTIVE"


@dataclass(frozen=True)
class PortalAccess:
    """How the portal itself may call an endpoint's live revision: where, and with which headers
    (a credential that passes its access check; never shown to anyone)."""

    url: str  # the base URL, without a trailing slash
    headers: dict[str, str] = field(default_factory=dict)
    via: str = ""  # how, in words: "the serving process's portal key"


@dataclass(frozen=True)
class IssuedKey:
    name: str  # the runtime's name for the key, used to revoke it
    secret: str  # shown once to the team, never stored in the clear


@dataclass(frozen=True)
class KeySpec:
    endpoint: str
    key_id: str  # a stable id the portal chose, so a retried issue finds its key
    display_name: str
    cidrs: tuple[str, ...] = ()
    check_addresses: bool = False  # the endpoint checks addresses: no cidrs then means nobody


def plan_of(steps: list[Step]) -> list[Change]:
    """What running `steps` would change, changing nothing: each step's own plan, in order.

    A step whose reads fail reports an error for itself; the others still report.
    """
    changes: list[Change] = []
    for step in steps:
        if step.plan is None:
            continue
        try:
            changes += step.plan()
        except RuntimeFailure as exc:
            changes.append(Change(step.name, "error", str(exc)))
    return changes


def run_steps(steps: list[Step], resources: DeploymentResources | None = None) -> DeploymentResources:
    """Run `steps` in order for a caller that keeps no journal; returns what they recorded."""
    resources = DeploymentResources(**(resources or {}))
    for step in steps:
        resources.update(step.run(resources).resources)
    return resources


class Runtime(ABC):
    """Where endpoints run. One setting, RUNTIME, picks the implementation."""

    name: str = ""
    # Whether a deployment may take only a share of the traffic, the live version keeping the
    # rest (a canary). Requests for a share are refused up front where it cannot.
    supports_canary: bool = False
    # Who checks each kind of access ("keys", "addresses"), as the endpoint page says it.
    enforcers: dict[str, str] = {}
    # The endpoint settings (names of `Resources` fields) this runtime does not use, and why: the
    # dashboard marks them so rather than let them look as if they applied.
    ignored_settings: frozenset[str] = frozenset()
    ignored_settings_reason: str = ""
    # How often the log panel asks for new entries, and how long the portal keeps a page it read
    # (a cloud's log API has a per-project read quota; a local file has none).
    log_poll_seconds: float = 3.0
    log_cache_seconds: float = 0.0
    # Whether `portal_access` gives the portal a way of its own to call a live endpoint.
    portal_path: bool = False
    # The identity mode: who checks callers' tokens ("serving": the serving process, against the
    # endpoint's issuer and JWKS URL; "platform": the platform's own IAM, which takes only its own
    # issuer's tokens and lets the endpoint's invokers call), and the values it starts from.
    identity_check: str = "serving"
    identity_defaults: dict[str, str] = {}

    def min_instances_refusal(self, min_instances: int) -> str | None:
        """Why an endpoint cannot have this minimum of instances here (None when it can): the
        service refuses the setting with this message when it is made."""
        return None

    @abstractmethod
    def deploy_steps(self, spec: DeploySpec) -> list[Step]:
        """The named, idempotent steps that take `spec` from nothing to serving."""

    def plan(self, spec: DeploySpec) -> list[Change]:
        """What deploying `spec` would change, changing nothing (see `plan_of`)."""
        return plan_of(self.deploy_steps(spec))

    def warm_up(self) -> None:  # noqa: B027 (most runtimes have nothing to warm)
        """Get ready for the first deploy; the worker calls this once when it starts."""

    @abstractmethod
    def apply_access(self, endpoint: str, access: AccessPolicy) -> None:
        """Make the endpoint's mode, keys and allowlist the ones given, replacing what was there.

        When this returns, the policy is in force for every request that arrives afterwards. An
        address mode with no CIDRs refuses every caller.
        """

    def access_for_live(
        self, live: DeploymentResources | None, access: AccessPolicy
    ) -> tuple[AccessPolicy, str]:
        """The policy `apply_access` can put in force on the live deployment, and why it is not
        `access` ("" when it is).

        `live` is the live deployment's resources (None when nothing is live). A runtime whose
        modes need different infrastructure in front of the service cannot switch a live endpoint
        between them without a deploy; it says so here and keeps what the deployment can enforce.
        """
        return access, ""

    @abstractmethod
    def issue_key(self, spec: KeySpec) -> IssuedKey:
        """Create (or find, by spec.key_id) a key for the endpoint and return its secret."""

    @abstractmethod
    def revoke_key(self, endpoint: str, key_name: str) -> None:
        """Make the key unusable; revoking a revoked key is not an error."""

    @abstractmethod
    def restore_key(self, endpoint: str, key_name: str) -> None:
        """Make a revoked key usable again (the portal allows it within 30 days of the revoke).

        Restoring a key that is not revoked is not an error. A key the runtime can no longer
        bring back raises PermanentError.
        """

    @abstractmethod
    def stop_steps(self, spec: DeploySpec) -> list[Step]:
        """The named, idempotent steps that stop serving the live deployment `spec`, keeping what
        `start_steps` needs to serve it again on the same URL (the port, the cloud configuration)."""

    @abstractmethod
    def start_steps(self, spec: DeploySpec) -> list[Step]:
        """The named, idempotent steps that serve the stopped live deployment `spec` again."""

    @abstractmethod
    def delete_steps(self, spec: TeardownSpec) -> list[Step]:
        """The named, idempotent steps that remove everything the runtime made for the endpoint.

        A resource already gone counts as removed, so a delete resumed half-way, or run twice,
        ends the same.
        """

    def https_front(self, endpoint: str, live: DeploymentResources) -> HttpsFront | None:
        """The HTTPS front of the live deployment (`live`: its resources) and its certificate, read
        from the provider; None where the runtime puts none in front (beat refreshes it)."""
        return None

    def replace_certificate(self, endpoint: str) -> str:
        """Give the endpoint's HTTPS front a new certificate in place of one the provider will never
        issue; returns the new one's name."""
        raise PermanentError(f"The {self.name} runtime puts no HTTPS front before endpoints.")

    def portal_access(self, endpoint: str, live: DeploymentResources | None) -> PortalAccess:
        """How the portal may call the endpoint's live revision itself (the playground), past its
        access check. PermanentError where the runtime offers no such path: the playground then
        calls the public URL with the caller's own key."""
        raise PermanentError(f"The {self.name} runtime gives the portal no credential of its own.")

    def read_log(self, endpoint: str, live: DeploymentResources | None, query: LogQuery) -> LogPage:
        """The live revision's log, newest entry last, as `query` filters and bounds it (see
        `worker.runtimes.logs`). `live` is the live deployment's resources (None when nothing is
        live). A page for an endpoint with no revision has no entries and no revision."""
        raise PermanentError(f"The {self.name} runtime keeps no log the portal can read.")

    @abstractmethod
    def ensure_serving(self, spec: DeploySpec) -> bool:
        """Make sure the live deployment `spec` is serving; start it again if it is not.

        The reconcile task calls this for every endpoint with a live deployment, so after a
        machine or product restart the endpoints come back on the same URL. Returns True when
        it had to start something. A cloud runtime whose platform keeps revisions running by
        itself returns False.
        """

    def traffic(
        self, endpoint: str, live: DeploymentResources | None, *, start: datetime, end: datetime, step: int
    ) -> Traffic:
        """The endpoint's requests by status class and latency percentiles, per revision, in steps
        of `step` seconds (a whole number of minutes) from `start` to `end` (aware datetimes).

        `live` is the live deployment's resources (None when nothing is live). A step as long as
        the window gives each revision's whole window in one point: what a rollout guard compares
        with its thresholds (`worker.runtimes.traffic.TrafficWindow`). ValueError for a window
        that cannot be asked; PermanentError where the runtime keeps no metrics.
        """
        raise PermanentError(f"The {self.name} runtime reports no traffic.")

    def set_canary_share(self, spec: DeploySpec, percent: int) -> str:
        """Give the canary deployment `spec` `percent` of the traffic (1 to 100), the revision in
        `spec.previous` (the deployment it shares with) the rest; at 100 the canary serves alone and
        the other revision serves nothing more. Repeating it is safe. Returns what was done, for the
        journal. A progressive deploy moves through its steps with this."""
        raise PermanentError(f"The {self.name} runtime cannot split traffic.")

    def end_canary(self, spec: DeploySpec) -> str:
        """Give every request back to the revision in `spec.previous` and stop serving the canary
        deployment `spec` (a rollout's rollback). Repeating it is safe. Returns what was done."""
        raise PermanentError(f"The {self.name} runtime cannot split traffic.")

    def scrape_traffic(self) -> list[TrafficSample]:
        """Read the request counters of every serving process this runtime runs here (beat, every
        TRAFFIC_SCRAPE_SECONDS); empty where the platform keeps the metrics itself."""
        return []
