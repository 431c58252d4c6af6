"""The records: models and their versions, endpoints, deployments, keys, allowlists, audit."""

from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.functional import cached_property
from knox.models import AbstractAuthToken, AuthTokenManager
from knox.settings import CONSTANTS

User = settings.AUTH_USER_MODEL

DNS_LABEL = RegexValidator(
    r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$",
    "Use 1-40 lowercase letters, digits and hyphens, starting with a letter and not ending "
    "with a hyphen (it becomes a DNS name).",
)


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(User, related_name="teams", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MLModelQuerySet(models.QuerySet):
    def for_user(self, user):
        return self if user.is_authenticated else self.none()


class MLModel(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(User, on_delete=models.PROTECT, related_name="ml_models")
    created_at = models.DateTimeField(default=timezone.now)

    objects = MLModelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "model"

    def __str__(self) -> str:
        return self.name


class ArtifactFormat(models.TextChoices):
    SKOPS = "skops", "skops"
    ONNX = "onnx", "ONNX"
    JOBLIB = "joblib", "joblib (pickle)"
    PICKLE = "pickle", "pickle"


PICKLE_FORMATS = {ArtifactFormat.JOBLIB, ArtifactFormat.PICKLE}


class ModelVersionQuerySet(models.QuerySet):
    def for_user(self, user):
        return self if user.is_authenticated else self.none()


class ModelVersion(models.Model):
    """One immutable artifact of a model, with the schema serving validates requests against."""

    model = models.ForeignKey(MLModel, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    artifact = models.FileField(upload_to="artifacts/%Y/%m/")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    format = models.CharField(max_length=10, choices=ArtifactFormat.choices)
    # [{"name": "sepal_length", "type": "number"}, ...] in the model's column order.
    input_schema = models.JSONField()
    # The model's classes_ in order, as JSON scalars; empty for a regressor.
    classes = models.JSONField(default=list, blank=True)
    # {"0": "<=50K"}: class (as a string) -> label shown to end users.
    label_map = models.JSONField(default=dict, blank=True)
    # Types a skops artifact needs beyond skops' defaults, recorded when an admin trusted them.
    trusted_types = models.JSONField(default=list, blank=True)
    estimator = models.CharField(max_length=200, blank=True)
    sklearn_version = models.CharField(max_length=40, blank=True)
    # The ONNX form, converted at upload and kept only if it gives scikit-learn's answers on a
    # fixed sample; deploys serve it when present. The note says which precision, or why there is none.
    onnx_artifact = models.FileField(upload_to="artifacts/%Y/%m/", blank=True)
    onnx_sha256 = models.CharField(max_length=64, blank=True)
    onnx_note = models.CharField(max_length=300, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    # Example rows the playground starts from (endpoints.examples): {"origin": "given" | "model" |
    # "schema", "rows": [{feature: value, ...}, ...], "note": ..., "by_feature": {feature: source}}.
    # Empty for versions registered before examples were kept: `example_rows` then reads the schema.
    examples = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["model__name", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["model", "number"], name="unique_version_number"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.number}"

    @property
    def feature_names(self) -> list[str]:
        return [feature["name"] for feature in self.input_schema]

    @cached_property
    def example_set(self) -> dict:
        """The examples kept with the version, or, for one registered before they were, the
        schema's (see `endpoints.examples.schema_examples`)."""
        from endpoints.examples import schema_examples

        if not self.examples.get("rows"):
            return schema_examples(self.input_schema)
        # jsonb keeps an object's keys in its own order: put each row back in the schema's.
        names = self.feature_names
        rows = [{name: row[name] for name in names if name in row} for row in self.examples["rows"]]
        return {**self.examples, "rows": rows}

    @property
    def serves_onnx(self) -> bool:
        return bool(self.onnx_artifact)

    @property
    def runs_code_when_loaded(self) -> bool:
        return self.format in PICKLE_FORMATS


class AccessMode(models.TextChoices):
    API_KEY = "api_key", "API key"
    IP_ALLOWLIST = "ip_allowlist", "IP allowlist"
    BOTH = "both", "API key and IP allowlist"
    OPEN = "open", "Open (no checks)"
    IDENTITY = "identity", "Identity (bearer JWT)"


class AccessPolicyState(models.TextChoices):
    APPLIED = "applied", "Applied"
    PENDING = "pending", "Pending"
    FAILED = "failed", "Failed"
    NEEDS_DEPLOY = "needs_deploy", "Needs a deploy"


class EndpointQuerySet(models.QuerySet):
    def for_user(self, user):
        """The endpoints a user may see and act on: every one not deleted (once signed in)."""
        return self.filter(deleted_at__isnull=True) if user.is_authenticated else self.none()

    def deleted(self):
        return self.filter(deleted_at__isnull=False)

    def with_live(self):
        return self.select_related("live_deployment__model_version__model")


class Endpoint(models.Model):
    # Unique among endpoints not deleted: a deleted endpoint keeps its records, and frees its name.
    name = models.CharField(max_length=40, validators=[DNS_LABEL])
    description = models.TextField(blank=True)
    region = models.CharField(max_length=40, default="us-central1")
    cpu = models.CharField(max_length=8, default="1")
    memory = models.CharField(max_length=8, default="512Mi")
    min_instances = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(100)])
    max_instances = models.PositiveIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(1000)]
    )
    concurrency = models.PositiveIntegerField(
        default=80, validators=[MinValueValidator(1), MaxValueValidator(1000)]
    )
    timeout_seconds = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(3600)]
    )
    access_mode = models.CharField(max_length=20, choices=AccessMode.choices, default=AccessMode.API_KEY)
    # The identity mode: who issues the callers' tokens, for which audience, where the issuer's
    # signing keys are (JWKS), a claim every token must carry ("name=value", optional), and on a
    # runtime whose platform checks tokens itself (Cloud Run's IAM), the principals it lets call
    # ("user:a@example.com", "serviceAccount:...", "group:...", "domain:..."). See services/identity.py.
    identity_issuer = models.CharField(max_length=300, blank=True)
    identity_audience = models.CharField(max_length=300, blank=True)
    identity_jwks_url = models.CharField("identity JWKS URL", max_length=500, blank=True)
    identity_claim = models.CharField(max_length=300, blank=True)
    identity_invokers = models.JSONField(default=list, blank=True)
    url = models.URLField(blank=True)
    gateway_url = models.URLField(blank=True)
    # The HTTPS front the runtime put before the live deployment under a name the team owns (a
    # load balancer on Google Cloud), as beat last read it: its address, which the name's DNS record
    # must point at, and the managed certificate's status ("" when there is no such front).
    https_address = models.CharField(max_length=64, blank=True)
    certificate_status = models.CharField(max_length=40, blank=True)
    certificate_detail = models.CharField(max_length=300, blank=True)
    front_checked_at = models.DateTimeField(null=True, blank=True)
    live_deployment = models.ForeignKey(
        "Deployment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # The access policy asked for and the one in force: every change of keys, allowlist or mode
    # bumps access_revision in its own transaction; the worker records the revision it applied.
    access_revision = models.PositiveIntegerField(default=0)
    access_applied_revision = models.PositiveIntegerField(default=0)
    access_requested_at = models.DateTimeField(null=True, blank=True)  # oldest change not yet applied
    access_applied_at = models.DateTimeField(null=True, blank=True)
    access_error = models.TextField(blank=True)  # why the last apply failed for good
    access_note = models.TextField(blank=True)  # what the runtime could not apply without a deploy
    access_claimed_until = models.DateTimeField(null=True, blank=True)
    # Set when a stop operation finishes (cleared by a start or a deploy), and when a delete
    # operation has removed everything the runtime made.
    stopped_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = EndpointQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"], condition=Q(deleted_at__isnull=True), name="unique_endpoint_name"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def checks_keys(self) -> bool:
        return self.access_mode in (AccessMode.API_KEY, AccessMode.BOTH)

    @property
    def checks_addresses(self) -> bool:
        return self.access_mode in (AccessMode.IP_ALLOWLIST, AccessMode.BOTH)

    @property
    def access_state(self) -> str:
        """Whether the live policy is the one asked for (AccessPolicyState)."""
        if self.access_applied_revision < self.access_revision:
            return AccessPolicyState.FAILED if self.access_error else AccessPolicyState.PENDING
        return AccessPolicyState.NEEDS_DEPLOY if self.access_note else AccessPolicyState.APPLIED

    @property
    def serving_state(self) -> str:
        """not_deployed, serving, stopped or deleted (an operation in progress is not counted)."""
        if self.deleted_at:
            return "deleted"
        if self.live_deployment_id is None:
            return "not_deployed"
        return "stopped" if self.stopped_at else "serving"

    @property
    def deletion_pending(self) -> bool:
        """A delete of the endpoint is queued or running."""
        return self.deployments.active().filter(action=DeploymentAction.DELETE).exists()

    @cached_property
    def pruned_configs(self) -> frozenset[str]:
        """The API configs the endpoint's deployments deleted (read once per instance: a history
        page asks for every row)."""
        lists = self.deployments.filter(resources__has_key="pruned_configs").values_list(
            "resources__pruned_configs", flat=True
        )
        return frozenset(config for configs in lists for config in configs)

    @property
    def https_host(self) -> str:
        """The name of the HTTPS front callers use, where there is one."""
        return self.url.removeprefix("https://").split("/")[0] if self.https_address else ""

    @property
    def https_pending(self) -> bool:
        """An HTTPS front whose certificate is not active yet: its address answers no HTTPS call."""
        return bool(self.https_address) and self.certificate_status != "ACTIVE"

    @property
    def public_url(self) -> str:
        """The URL end users call: the gateway where there is one, else the service URL."""
        return self.gateway_url or self.url


class DeploymentAction(models.TextChoices):
    """What a journaled operation on an endpoint does; one runs at a time per endpoint."""

    DEPLOY = "deploy", "Deploy"
    STOP = "stop", "Stop"
    START = "start", "Start"
    DELETE = "delete", "Delete"


class DeploymentStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    SUPERSEDED = "superseded", "Superseded"
    ROLLED_BACK = "rolled_back", "Rolled back"
    DONE = "done", "Done"  # a stop, start or delete that finished


ACTIVE_DEPLOYMENT_STATUSES = (DeploymentStatus.QUEUED, DeploymentStatus.RUNNING)
FINISHED_DEPLOYMENT_STATUSES = (
    DeploymentStatus.READY,
    DeploymentStatus.FAILED,
    DeploymentStatus.SUPERSEDED,
    DeploymentStatus.ROLLED_BACK,
    DeploymentStatus.DONE,
)


class DeploymentQuerySet(models.QuerySet):
    def for_user(self, user):
        return self if user.is_authenticated else self.none()

    def active(self):
        return self.filter(status__in=ACTIVE_DEPLOYMENT_STATUSES)


class RolloutStatus(models.TextChoices):
    """Where a progressive deploy's rollout is ("" for a deploy that is not progressive)."""

    NONE = "", "Not progressive"
    PENDING = "pending", "Waiting for the deploy"
    ADVANCING = "advancing", "Advancing"
    COMPLETE = "complete", "Complete"
    ROLLED_BACK = "rolled_back", "Rolled back"
    ENDED = "ended", "Ended by another deployment"


#: Deployments that served their endpoint at some time: the ones a rollback can go back to.
ONCE_LIVE_STATUSES = (DeploymentStatus.READY, DeploymentStatus.SUPERSEDED, DeploymentStatus.ROLLED_BACK)


class Deployment(models.Model):
    """One operation on an endpoint, journaled step by step: most often putting a model version on
    it (a deploy), else stopping, starting or deleting it (`action`)."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deployments")
    action = models.CharField(
        max_length=10, choices=DeploymentAction.choices, default=DeploymentAction.DEPLOY
    )
    # The version deployed; for a stop, start or delete, the one live then (none if nothing was).
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="deployments"
    )
    traffic_percent = models.PositiveSmallIntegerField(
        default=100, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    status = models.CharField(
        max_length=20, choices=DeploymentStatus.choices, default=DeploymentStatus.QUEUED
    )
    # [{"step": "start_process", "state": "done", "at": iso, "seconds": 0.4, "message": "..."}]
    steps = models.JSONField(default=list, blank=True)
    # Names of what the runtime made: {"revision": ..., "url": ..., "api_config": ...}.
    resources = models.JSONField(default=dict, blank=True)
    # The endpoint's runtime settings the deploy was made with ({"region": ..., "cpu": ...}), so the
    # page can tell settings saved since then as pending; empty for deploys made before this was kept.
    settings = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    rollback_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    task_id = models.CharField(max_length=64, blank=True)
    # A progressive deploy (see endpoints.services.rollouts): its shares in percent, ascending and
    # ending at 100 (empty: not progressive), how long each lasts, and the guard judged over the
    # window before each move: the new revision's 5xx share and p99, once it had enough requests.
    rollout_steps = models.JSONField(default=list, blank=True)
    rollout_step_seconds = models.PositiveIntegerField(default=0)
    rollout_window_seconds = models.PositiveIntegerField(default=0)
    rollout_max_error_percent = models.FloatField(default=0)
    rollout_max_p99_ms = models.PositiveIntegerField(default=0)
    rollout_min_requests = models.PositiveIntegerField(default=0)
    rollout_status = models.CharField(max_length=20, choices=RolloutStatus.choices, default="", blank=True)
    rollout_percent = models.PositiveSmallIntegerField(default=0)  # the share it has now
    rollout_next_at = models.DateTimeField(null=True, blank=True)  # when the next step is due
    rollout_claimed_until = models.DateTimeField(null=True, blank=True)  # a beat check holds it
    rollout_reason = models.TextField(blank=True)  # why it rolled back
    # The live deployment this one shared the traffic with when it was asked for.
    shares_with = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = DeploymentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint"],
                condition=Q(status__in=["queued", "running"]),
                name="one_active_deployment_per_endpoint",
            ),
        ]
        indexes = [models.Index(fields=["endpoint", "-created_at"])]

    def __str__(self) -> str:
        if self.action != DeploymentAction.DEPLOY:
            return f"{self.action} {self.pk} of {self.endpoint}"
        return f"deployment {self.pk} of {self.model_version} to {self.endpoint}"

    @property
    def is_deploy(self) -> bool:
        return self.action == DeploymentAction.DEPLOY

    @property
    def is_progressive(self) -> bool:
        return bool(self.rollout_steps)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_DEPLOYMENT_STATUSES

    @property
    def roll_back_refusal(self) -> str:
        """Why deploying this deployment's version again cannot be a rollback ("" when it can)."""
        if not self.is_deploy:
            return "Only a deploy can be rolled back to."
        if self.endpoint.deleted_at:
            return "The endpoint was deleted."
        if self.endpoint.live_deployment_id == self.pk:
            return "This deployment is already live."
        if self.status not in ONCE_LIVE_STATUSES:
            return "Only a deployment that was once live can be rolled back to."
        config = (self.resources or {}).get("api_config")
        if config and config in self.endpoint.pruned_configs:
            return (
                "Its API config was deleted to stay within the gateway's quota (only the newest are "
                "kept): deploy its version again instead."
            )
        return ""

    @property
    def can_roll_back_to(self) -> bool:
        return not self.roll_back_refusal


class KeyRequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    ISSUED = "issued", "Issued"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"
    # Issued, but nobody revealed it within KEY_REVEAL_WINDOW_HOURS: the secret is erased and the
    # key revoked; an admin may re-issue it.
    EXPIRED_UNSEEN = "expired_unseen", "Expired unseen"


class ApiKeyRequestQuerySet(models.QuerySet):
    def for_user(self, user):
        if not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self
        return self.filter(team__members=user)


class ApiKeyRequest(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="key_requests")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="key_requests")
    reason = models.TextField()
    valid_days = models.PositiveIntegerField(default=90)
    status = models.CharField(
        max_length=20, choices=KeyRequestStatus.choices, default=KeyRequestStatus.PENDING
    )
    requested_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # The issued secret, sealed with KEY_SEALING_KEY until its one reveal; emptied when it is
    # revealed, when the key is revoked, and when the reveal window passes.
    sealed_secret = models.TextField(blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    revealed_at = models.DateTimeField(null=True, blank=True)
    # The request an admin re-issued this one as, after its key expired unseen.
    reissued_as = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reissue_of"
    )

    objects = ApiKeyRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"key request {self.pk} by {self.team} for {self.endpoint}"

    @property
    def reveal_until(self):
        """The end of the issued key's reveal window (KEY_REVEAL_WINDOW_HOURS after its issue)."""
        if self.issued_at is None:
            return None
        return self.issued_at + timedelta(hours=settings.KEY_REVEAL_WINDOW_HOURS)

    @property
    def can_reveal(self) -> bool:
        """The key is issued, its secret still sealed and its reveal window still open."""
        return (
            self.status == KeyRequestStatus.ISSUED
            and bool(self.sealed_secret)
            and (self.reveal_until is None or timezone.now() < self.reveal_until)
        )


#: How long a revoked key can be restored: Google keeps a deleted API key this long.
KEY_RESTORE_DAYS = 30


class ApiKeyQuerySet(models.QuerySet):
    def for_user(self, user):
        if not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self
        return self.filter(team__members=user)

    def usable(self, now=None):
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))


class ApiKey(models.Model):
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="api_keys")
    # None for a key the portal made for one of its own load tests (see LoadTest.api_key).
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys")
    request = models.OneToOneField(
        ApiKeyRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="api_key"
    )
    display_name = models.CharField(max_length=120)
    prefix = models.CharField(max_length=16, db_index=True)
    key_hash = models.CharField(max_length=64)
    cloud_name = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # A rotated key: its replacement's request, and when the key itself goes (once the
    # replacement is issued). Beat's `worker.expire_keys` revokes it then.
    replacement = models.ForeignKey(
        ApiKeyRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="replaces"
    )
    revoke_after = models.DateTimeField(null=True, blank=True)
    # Why the runtime has not carried out the last revoke or restore (empty once it has).
    runtime_error = models.TextField(blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.prefix}…)"

    @property
    def state(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= timezone.now():
            return "expired"
        return "active"

    @property
    def can_restore(self) -> bool:
        """Revoked less than KEY_RESTORE_DAYS ago and not expired: an admin may undo the revoke."""
        now = timezone.now()
        return bool(
            self.revoked_at
            and self.revoked_at >= now - timedelta(days=KEY_RESTORE_DAYS)
            and not (self.expires_at and self.expires_at <= now)
        )

    @property
    def ends_at(self):
        """When the key stops working: its expiry, or the end of a rotation's overlap if sooner."""
        ends = [moment for moment in (self.expires_at, self.revoke_after) if moment]
        return min(ends) if ends else None


class AllowlistEntry(models.Model):
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="allowlist")
    cidr = models.CharField(max_length=50)
    note = models.CharField(max_length=200, blank=True)
    added_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["cidr"]
        verbose_name_plural = "allowlist entries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "cidr"], name="unique_cidr_per_endpoint"),
        ]

    def __str__(self) -> str:
        return self.cidr


class AuditEventQuerySet(models.QuerySet):
    def for_user(self, user):
        return self if user.is_authenticated and user.is_staff else self.none()


class AuditEvent(models.Model):
    """What happened, who did it, to what; written by the services, never edited."""

    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=60)
    target_type = models.CharField(max_length=40)
    target_id = models.CharField(max_length=40)
    target_repr = models.CharField(max_length=200)
    details = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target_repr}"


class ApiTokenQuerySet(models.QuerySet):
    def for_user(self, user):
        """A user's own tokens; an admin sees everyone's."""
        if not user.is_authenticated:
            return self.none()
        return self if user.is_staff else self.filter(user=user)


class ApiToken(AbstractAuthToken):
    """A REST API token (django-rest-knox): only its SHA-512 digest is stored, and it expires.

    Knox keys its own table by the digest; this one has a plain id, so the dashboard and the API
    can name a token (to revoke it) without putting its digest in a URL.
    """

    id = models.BigAutoField(primary_key=True)
    digest = models.CharField(max_length=CONSTANTS.DIGEST_LENGTH, unique=True)

    objects = AuthTokenManager.from_queryset(ApiTokenQuerySet)()

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"API token {self.prefix}…"

    @property
    def prefix(self) -> str:
        """The token's first characters: enough to recognise it, far too few to use it."""
        return self.token_key[:8]

    @property
    def is_expired(self) -> bool:
        return self.expiry is not None and self.expiry <= timezone.now()


class OwedTask(models.Model):
    """Work the worker owes: `task` for the row `object_id`, written in the transaction of the change
    that asks for it and kept until the task settles it (done, or its failure recorded).

    The broker only carries the reminder; this row is the promise. `due_at` is when the relay sends
    the task again if nothing has settled it by then, and `generation` counts the changes that asked
    for it, so a task that started before a newer change cannot settle that one.
    """

    task = models.CharField(max_length=64)
    object_id = models.BigIntegerField()
    generation = models.PositiveIntegerField(default=1)
    due_at = models.DateTimeField(db_index=True)
    sends = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "object_id"], name="owed_task_once")]

    def __str__(self) -> str:
        return f"{self.task}({self.object_id})"


class TrafficRollup(models.Model):
    """What one revision of an endpoint answered in one minute (`span` 1) or one hour (`span` 60),
    as the local runtime's scraper counted it: requests by status class and a latency histogram.

    Hours are kept beside minutes so a week's chart sums 168 rows, not 10,080. Times are whole
    minutes since the Unix epoch, so a chart's steps are integer arithmetic in SQL on any database.
    """

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="+", db_index=False)
    revision = models.CharField(max_length=64)
    span = models.PositiveSmallIntegerField()  # minutes: 1 or 60
    minute = models.IntegerField()  # the first minute, in minutes since 1970-01-01 UTC
    ok = models.PositiveIntegerField(default=0)  # 1xx-3xx
    client_errors = models.PositiveIntegerField(default=0)  # 4xx
    server_errors = models.PositiveIntegerField(default=0)  # 5xx
    latency_sum = models.FloatField(default=0.0)  # seconds, over all requests counted
    # latency_0 ... latency_14: requests per latency bucket (worker.runtimes.traffic.LATENCY_BOUNDS,
    # then +Inf), added below.

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "span", "minute", "revision"], name="traffic_rollup_once"
            )
        ]
        indexes = [models.Index(fields=["minute"], name="traffic_rollup_minute")]

    def __str__(self) -> str:
        return f"{self.revision} at minute {self.minute} (+{self.span})"


LATENCY_BUCKETS = 15  # len(worker.runtimes.traffic.LATENCY_BOUNDS) + 1
for _index in range(LATENCY_BUCKETS):
    TrafficRollup.add_to_class(f"latency_{_index}", models.PositiveIntegerField(default=0))


class TrafficCursor(models.Model):
    """The counters a serving process showed at the last scrape: the next scrape adds only what
    came after. A process that started again (`started` differs) counts from zero."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="+", db_index=False)
    revision = models.CharField(max_length=64)
    started = models.FloatField()  # the process's start, seconds since the epoch
    scraped_at = models.DateTimeField()
    counters = models.JSONField()  # ok, client_errors, server_errors, buckets, latency_sum

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "revision"], name="traffic_cursor_once")]

    def __str__(self) -> str:
        return f"{self.revision} scraped at {self.scraped_at}"


class LoadTestStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_LOAD_TEST_STATUSES = (LoadTestStatus.QUEUED, LoadTestStatus.RUNNING)


class LoadTestQuerySet(models.QuerySet):
    def for_user(self, user):
        """Load tests of the endpoints a user may see."""
        return self.filter(endpoint__in=Endpoint.objects.for_user(user))

    def active(self):
        return self.filter(status__in=ACTIVE_LOAD_TEST_STATUSES)


class LoadTest(models.Model):
    """A load test of an endpoint's public URL, run by the worker with Locust (worker.load_test).

    `url` and `rows` are what it sends (the live version's example rows, as single rows and as one
    batch), kept so the test's locustfile is the one that ran. `timeseries` holds a snapshot per
    second, `summary` the whole test's figures (see worker.load_test for their fields).
    """

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="load_tests")
    requested_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    users = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    spawn_rate = models.PositiveIntegerField(validators=[MinValueValidator(1)])  # users started per second
    duration_seconds = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    status = models.CharField(max_length=20, choices=LoadTestStatus.choices, default=LoadTestStatus.QUEUED)
    url = models.URLField()
    rows = models.JSONField(default=list)
    timeseries = models.JSONField(default=list, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    # The key made for the test (None for an endpoint that checks no keys); revoked when it ends.
    api_key = models.OneToOneField(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="load_test"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The worker running it holds it until then, renewing the hold while the test runs.
    claimed_until = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    objects = LoadTestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint"],
                condition=Q(status__in=["queued", "running"]),
                name="one_active_load_test_per_endpoint",
            ),
        ]

    def __str__(self) -> str:
        return f"load test {self.pk} of {self.endpoint}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_LOAD_TEST_STATUSES

    @property
    def final_summary(self) -> dict | None:
        """The whole test's figures, or None before it ended (or when it failed before measuring)."""
        return self.summary or None
