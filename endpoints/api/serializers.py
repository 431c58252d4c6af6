"""What the API shows of each record, and the shape of what it accepts.

Read serializers render records. Input serializers check types and shapes, and state every rule
a value must follow on its own (a length, a range, a pattern, a choice) so the OpenAPI schema says
what the API takes; each rule comes from where the service layer keeps it (the model's fields and
validators, or the service's own pattern and message), so the dashboard and the API refuse the same
things in the same words. Rules about meaning across fields or records (a memory size for the CPU,
a team you are in, who may do what) stay in the services. Input serializers refuse fields they do
not know, and the schema says so (`additionalProperties: false`).
"""

from django.conf import settings
from django.core import validators
from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.utils import html

from endpoints.models import (
    DNS_LABEL,
    AccessPolicyState,
    AllowlistEntry,
    ApiKey,
    ApiKeyRequest,
    ApiToken,
    AuditEvent,
    Deployment,
    Endpoint,
    LoadTest,
    MLModel,
    ModelVersion,
    RolloutStatus,
    Team,
)
from endpoints.services.allowlist import CIDR_SHAPE
from endpoints.services.deployments import FULL_TRAFFIC
from endpoints.services.endpoints import CPU_ACCEPTED, MEMORY_SHAPE, SETTINGS_FIELDS
from endpoints.services.identity import CLAIM_OR_NOTHING, MAX_INVOKERS, PRINCIPAL
from endpoints.services.keys import (
    DEFAULT_OVERLAP_HOURS,
    MAX_OVERLAP_HOURS,
    REASON_PATTERN,
    UNKNOWN_TEAM,
)
from endpoints.services.rollouts import LIMITS, MAX_STEPS
from endpoints.services.versions import MODEL_NAME_PATTERN

# -- reads -----------------------------------------------------------------------------------------


class UsernameField(serializers.SlugRelatedField):
    """A user shown by username (read only); null where the record's user may be missing."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="username", read_only=True, **kwargs)

    def bind(self, field_name, parent):
        super().bind(field_name, parent)
        model = getattr(getattr(parent, "Meta", None), "model", None)
        if model is not None:
            self.allow_null = model._meta.get_field(self.source).null


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name"]


class MLModelSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:model-detail")
    versions_url = serializers.HyperlinkedIdentityField(view_name="api:model-versions")
    owner = UsernameField()
    latest_version = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="The highest version number, if any."
    )

    class Meta:
        model = MLModel
        fields = ["id", "url", "name", "description", "owner", "created_at", "latest_version", "versions_url"]


class FeatureSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=["number", "integer", "boolean", "string"])
    categories = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        help_text="The values the model knows, when it knows a set.",
    )
    other_values = serializers.BooleanField(
        required=False,
        help_text="Whether values outside `categories` are taken (the model's encoder ignores them).",
    )
    nullable = serializers.BooleanField(
        required=False, default=False, help_text="Whether the value may be missing (`null`)."
    )


class ExamplesSerializer(serializers.Serializer):
    """Example rows for the version's input: what the dashboard's playground starts from."""

    origin = serializers.ChoiceField(
        choices=["given", "model", "schema"],
        help_text="given at upload, read from the model, or (a version registered before examples "
        "were kept, or an ONNX file) made from the schema alone",
    )
    rows = serializers.ListField(
        child=serializers.DictField(child=serializers.JSONField(allow_null=True)),
        help_text="Rows of named features, as /predict takes them",
    )
    note = serializers.CharField(help_text="Where the values come from")
    by_feature = serializers.DictField(
        child=serializers.CharField(), help_text="Per feature, what in the model gave its value"
    )


class ModelVersionSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:version-detail")
    model_name = serializers.CharField(source="model.name", read_only=True)
    input_schema = FeatureSerializer(many=True, read_only=True)
    classes = serializers.ListField(child=serializers.JSONField(), read_only=True)
    label_map = serializers.DictField(child=serializers.CharField(), read_only=True)
    metrics = serializers.DictField(child=serializers.JSONField(), read_only=True)
    trusted_types = serializers.ListField(child=serializers.CharField(), read_only=True)
    examples = ExamplesSerializer(source="example_set", read_only=True)
    runs_code_when_loaded = serializers.BooleanField(read_only=True)
    created_by = UsernameField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "url",
            "model",
            "model_name",
            "number",
            "format",
            "sha256",
            "size_bytes",
            "estimator",
            "sklearn_version",
            "onnx_sha256",
            "onnx_note",
            "input_schema",
            "classes",
            "label_map",
            "metrics",
            "trusted_types",
            "examples",
            "runs_code_when_loaded",
            "created_by",
            "created_at",
        ]


class VersionRefSerializer(serializers.ModelSerializer):
    """A model version in brief, as other records mention it."""

    model_name = serializers.CharField(source="model.name", read_only=True)

    class Meta:
        model = ModelVersion
        fields = ["id", "model", "model_name", "number"]


class StepSerializer(serializers.Serializer):
    """One entry of a deployment's journal."""

    step = serializers.CharField()
    title = serializers.CharField(required=False)
    state = serializers.CharField(help_text="running, done, retrying or failed")
    at = serializers.DateTimeField()
    seconds = serializers.FloatField(required=False)
    message = serializers.CharField(required=False, allow_blank=True)


class RolloutSerializer(serializers.Serializer):
    """A progressive deploy's rollout: where it is, and the settings it was asked with."""

    status = serializers.ChoiceField(
        source="rollout_status",
        choices=RolloutStatus.choices,
        help_text='"" for a deploy that is not progressive; pending until the deploy is ready; '
        "advancing; complete (the new version has all the traffic); rolled_back (by itself, "
        "`reason` says why); ended (another deployment, a stop or a delete took over)",
    )
    percent = serializers.IntegerField(source="rollout_percent", help_text="The share it has now.")
    steps = serializers.ListField(child=serializers.IntegerField(), source="rollout_steps")
    step_seconds = serializers.IntegerField(source="rollout_step_seconds")
    window_seconds = serializers.IntegerField(source="rollout_window_seconds")
    max_error_percent = serializers.FloatField(source="rollout_max_error_percent")
    max_p99_ms = serializers.IntegerField(source="rollout_max_p99_ms")
    min_requests = serializers.IntegerField(source="rollout_min_requests")
    next_at = serializers.DateTimeField(
        source="rollout_next_at", allow_null=True, help_text="When the next step is due."
    )
    reason = serializers.CharField(source="rollout_reason", help_text="Why it rolled back.")
    shares_with = serializers.IntegerField(
        source="shares_with_id",
        allow_null=True,
        help_text="The id of the deployment it shares the traffic with (live again after a rollback).",
    )


class DeploymentSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:deployment-detail")
    endpoint = serializers.SlugRelatedField(slug_field="name", read_only=True)
    model_version = VersionRefSerializer(read_only=True)
    steps = StepSerializer(many=True, read_only=True)
    resources = serializers.DictField(
        child=serializers.JSONField(),
        read_only=True,
        help_text="What the runtime made for this deployment: revision, url, api_config...",
    )
    requested_by = UsernameField()
    rollout = RolloutSerializer(source="*", read_only=True)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "url",
            "endpoint",
            "action",
            "model_version",
            "traffic_percent",
            "rollout",
            "status",
            "steps",
            "resources",
            "error",
            "rollback_of",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "attempts",
        ]


class LiveDeploymentSerializer(serializers.ModelSerializer):
    """The deployment an endpoint serves, in brief."""

    url = serializers.HyperlinkedIdentityField(view_name="api:deployment-detail")
    model_version = VersionRefSerializer(read_only=True)

    class Meta:
        model = Deployment
        fields = ["id", "url", "model_version", "traffic_percent", "finished_at"]


class AccessPolicyStateSerializer(serializers.Serializer):
    """Whether the access policy in force is the one asked for."""

    state = serializers.ChoiceField(
        source="access_state",
        choices=AccessPolicyState.choices,
        read_only=True,
        help_text="applied; pending (queued or being applied); failed (see error); needs_deploy (see note).",
    )
    revision = serializers.IntegerField(
        source="access_revision",
        read_only=True,
        help_text="Bumped by every change of mode, keys or allowlist.",
    )
    applied_revision = serializers.IntegerField(source="access_applied_revision", read_only=True)
    pending_since = serializers.SerializerMethodField()
    applied_at = serializers.DateTimeField(source="access_applied_at", read_only=True, allow_null=True)
    error = serializers.CharField(source="access_error", read_only=True)
    note = serializers.CharField(source="access_note", read_only=True)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_pending_since(self, endpoint: Endpoint):
        """The oldest change not yet in force; null when none is waiting."""
        if endpoint.access_applied_revision >= endpoint.access_revision or not endpoint.access_requested_at:
            return None
        return serializers.DateTimeField().to_representation(endpoint.access_requested_at)


class EndpointSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:endpoint-detail", lookup_field="name")
    public_url = serializers.CharField(
        read_only=True, help_text="What end users call: the gateway where there is one, else the service."
    )
    service_url = serializers.CharField(source="url", read_only=True)
    live_deployment = LiveDeploymentSerializer(read_only=True, allow_null=True)
    serving_state = serializers.ChoiceField(
        choices=["not_deployed", "serving", "stopped", "deleted"],
        read_only=True,
        help_text="Whether the live version serves; an operation in progress is in `deployments`.",
    )
    access_policy = AccessPolicyStateSerializer(source="*", read_only=True)
    identity_invokers = serializers.ListField(child=serializers.CharField(), read_only=True)
    created_by = UsernameField()

    class Meta:
        model = Endpoint
        fields = [
            "name",
            "url",
            *SETTINGS_FIELDS,
            "public_url",
            "service_url",
            "gateway_url",
            "live_deployment",
            "serving_state",
            "stopped_at",
            "access_policy",
            "created_by",
            "created_at",
        ]


class AllowlistEntrySerializer(serializers.ModelSerializer):
    added_by = UsernameField()

    class Meta:
        model = AllowlistEntry
        fields = ["id", "cidr", "note", "added_by", "added_at"]


# "KeyRequest" would read as the request body of a "Key" in the schema's naming.
@extend_schema_serializer(component_name="KeyRequestRecord")
class KeyRequestSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:key-request-detail")
    team_name = serializers.CharField(source="team.name", read_only=True)
    endpoint = serializers.SlugRelatedField(slug_field="name", read_only=True)
    requested_by = UsernameField()
    decided_by = UsernameField()
    can_reveal = serializers.BooleanField(
        read_only=True, help_text="True while the issued key waits for its one reveal, within its window."
    )
    reveal_until = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="When the issued key's reveal window ends: unseen by then, it is erased and revoked "
        "(status expired_unseen).",
    )
    api_key = serializers.SerializerMethodField(help_text="The id of the key issued for this request.")

    class Meta:
        model = ApiKeyRequest
        fields = [
            "id",
            "url",
            "team",
            "team_name",
            "endpoint",
            "reason",
            "valid_days",
            "status",
            "requested_by",
            "requested_at",
            "decided_by",
            "decided_at",
            "decision_note",
            "error",
            "can_reveal",
            "issued_at",
            "reveal_until",
            "revealed_at",
            "reissued_as",
            "api_key",
        ]

    def get_api_key(self, request) -> int | None:
        key = getattr(request, "api_key", None)
        return key.pk if key else None


class ApiKeySerializer(serializers.ModelSerializer):
    """A key as its team and the admins see it: never the secret, never its hash."""

    team_name = serializers.CharField(
        source="team.name", read_only=True, allow_null=True, help_text="null for a load test's key."
    )
    endpoint = serializers.SlugRelatedField(slug_field="name", read_only=True)
    state = serializers.ChoiceField(choices=["active", "expired", "revoked"], read_only=True)
    revoked_by = UsernameField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "display_name",
            "prefix",
            "team",
            "team_name",
            "endpoint",
            "request",
            "state",
            "created_at",
            "expires_at",
            "revoked_at",
            "revoked_by",
            "revoke_after",
            "replacement",
        ]


class LoadTestSnapshotSerializer(serializers.Serializer):
    """One second of a load test (latencies in milliseconds, over that second's requests)."""

    t = serializers.FloatField(help_text="Seconds since the test started.")
    users = serializers.IntegerField()
    requests = serializers.IntegerField()
    failures = serializers.IntegerField()
    rps = serializers.FloatField()
    p50 = serializers.IntegerField(allow_null=True)
    p95 = serializers.IntegerField(allow_null=True)
    p99 = serializers.IntegerField(allow_null=True)


class LoadTestFailureSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The request: `single row` or `batch of N rows`.")
    reason = serializers.CharField(
        help_text="The status and the endpoint's `detail`, or why nothing answered."
    )
    count = serializers.IntegerField()


class LoadTestSummarySerializer(serializers.Serializer):
    """The whole test's figures (latencies in milliseconds)."""

    seconds = serializers.FloatField()
    stopped = serializers.BooleanField(help_text="True when it was cancelled before its duration.")
    requests = serializers.IntegerField()
    failures = serializers.IntegerField()
    rps = serializers.FloatField()
    p50 = serializers.IntegerField(allow_null=True)
    p95 = serializers.IntegerField(allow_null=True)
    p99 = serializers.IntegerField(allow_null=True)
    avg = serializers.FloatField()
    max = serializers.FloatField()
    failures_by_reason = LoadTestFailureSerializer(many=True)


class LoadTestSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:load-test-detail")
    endpoint = serializers.SlugRelatedField(slug_field="name", read_only=True)
    target = serializers.URLField(source="url", read_only=True, help_text="The public URL the test called.")
    requested_by = UsernameField()
    cancelled_by = UsernameField()
    timeseries = LoadTestSnapshotSerializer(many=True, read_only=True, help_text="A snapshot per second.")
    summary = LoadTestSummarySerializer(
        source="final_summary",
        read_only=True,
        allow_null=True,
        help_text="The whole test's figures, once it has ended (null before, and for a test that failed "
        "before measuring).",
    )

    class Meta:
        model = LoadTest
        fields = [
            "id",
            "url",
            "endpoint",
            "target",
            "status",
            "users",
            "spawn_rate",
            "duration_seconds",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "cancel_requested_at",
            "cancelled_by",
            "error",
            "api_key",
            "timeseries",
            "summary",
        ]


class ChangeSerializer(serializers.Serializer):
    step = serializers.CharField(help_text="The deploy step that would make the change.")
    action = serializers.ChoiceField(choices=["create", "update", "none", "error"])
    detail = serializers.CharField()


class DeploymentPlanSerializer(serializers.Serializer):
    """What an operation would change; nothing was changed to find out."""

    endpoint = serializers.CharField()
    action = serializers.CharField()
    model_version = serializers.IntegerField(allow_null=True)
    traffic_percent = serializers.IntegerField(allow_null=True)
    runtime = serializers.CharField()
    changes = ChangeSerializer(many=True)


class RevealedKeySerializer(serializers.Serializer):
    key = serializers.CharField(help_text="The secret, shown this once; store it now.")


class AuditEventSerializer(serializers.ModelSerializer):
    actor = UsernameField()
    details = serializers.DictField(child=serializers.JSONField(), read_only=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "at", "actor", "action", "target_type", "target_id", "target_repr", "details"]


class ApiTokenSerializer(serializers.ModelSerializer):
    """A token as its owner and the admins see it: its prefix, never its secret or digest."""

    user = UsernameField()
    prefix = serializers.CharField(read_only=True, help_text="The token's first 8 characters.")
    expired = serializers.BooleanField(source="is_expired", read_only=True)
    current = serializers.SerializerMethodField(help_text="Whether this request is signed with it.")

    class Meta:
        model = ApiToken
        fields = ["id", "prefix", "user", "created", "expiry", "expired", "current"]

    def get_current(self, token) -> bool:
        request = self.context.get("request")
        return isinstance(getattr(request, "auth", None), ApiToken) and request.auth.pk == token.pk


class TokenIssuedSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send it as `Authorization: Token <token>`; it is shown once.")
    expiry = serializers.DateTimeField(help_text="When the token stops working.")


# -- input -----------------------------------------------------------------------------------------


# Input serializers check types and single-value rules, and refuse unknown fields; the services
# judge the rest. A required text field takes a blank value (`blank_refused`), so a blank is
# refused in the service's words ("Give the endpoint a name."), as the dashboard does, while the
# schema says it cannot be blank.


class InputSerializer(serializers.Serializer):
    IGNORED = {"csrfmiddlewaretoken"}

    def validate(self, attrs):
        unknown = set(getattr(self, "initial_data", {}) or {}) - set(self.fields) - self.IGNORED
        if unknown:
            raise serializers.ValidationError(
                {name: ["This field is not known."] for name in sorted(unknown)}
            )
        return attrs


class StatedRules:
    """A field stating rules in the schema that the service enforces in its own words.

    `openapi`: schema keywords added to the field's schema (`{"pattern": CPU_ACCEPTED}`).
    `service_requires`: a missing value is passed on to the service, which refuses it ("Choose a
    model file to upload."); the schema says the field is required.
    `blank_refused`: the same for a missing or blank text ("Give the endpoint a name."); the schema
    says it is required and cannot be blank.
    """

    def __init__(
        self,
        *,
        openapi: dict | None = None,
        service_requires: bool = False,
        blank_refused: bool = False,
        **kwargs,
    ):
        self.openapi_rules = openapi or {}
        self.blank_refused = blank_refused
        self.service_requires = service_requires or blank_refused
        if self.service_requires:
            kwargs["required"] = False
        if blank_refused:
            kwargs.update(allow_blank=True, default="")
        super().__init__(**kwargs)


class TextField(StatedRules, serializers.CharField):
    """Text, and only text: a number where text is expected is refused, as the schema says (DRF's
    CharField would turn 0 into "0")."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class WholeNumberField(StatedRules, serializers.IntegerField):
    """A whole number; in a form (which has no null), the text `null` is null where null is taken."""

    def get_value(self, dictionary):
        value = super().get_value(dictionary)
        return None if self.allow_null and html.is_html_input(dictionary) and value == "null" else value


class UploadField(StatedRules, serializers.FileField):
    pass


class StatedNumberField(StatedRules, serializers.FloatField):
    pass


class StatedListField(StatedRules, serializers.ListField):
    pass


class ServiceCheckedListField(StatedListField):
    """A list whose items the service checks, naming every bad one in one message on the field."""

    def run_child_validation(self, data):
        return list(data)


def limits(name: str) -> dict:
    """The schema keywords of a progressive deploy's whole-number setting (see rollouts.LIMITS)."""
    low, high = LIMITS[name]
    return {"minimum": low, "maximum": high}


def model_rules(model, name: str) -> dict:
    """The schema keywords for the rules a model field's `full_clean` applies: length, blank, range
    and pattern."""
    field = model._meta.get_field(name)
    rules: dict = {}
    for validator in field.validators:
        if isinstance(validator, validators.MaxLengthValidator):
            rules["maxLength"] = validator.limit_value
        elif isinstance(validator, validators.MinValueValidator):
            rules["minimum"] = max(rules.get("minimum", validator.limit_value), validator.limit_value)
        elif isinstance(validator, validators.MaxValueValidator):
            rules["maximum"] = min(rules.get("maximum", validator.limit_value), validator.limit_value)
        elif isinstance(validator, validators.RegexValidator):
            rules["pattern"] = validator.regex.pattern
    if isinstance(field, (models.CharField, models.TextField)) and not field.blank:
        rules["minLength"] = 1
        rules.setdefault("pattern", r"\S")  # spaces alone are a blank (DRF strips them)
    return rules


def model_field(model, name: str, **kwargs) -> serializers.Field:
    """An optional input field for a model field: its type here, its rules in the schema, the
    model's `full_clean` in the service enforcing them in its words."""
    field = model._meta.get_field(name)
    if field.choices:
        return serializers.ChoiceField(choices=field.choices, required=False, **kwargs)
    field_class = WholeNumberField if isinstance(field, models.IntegerField) else TextField
    if field_class is TextField:
        kwargs.setdefault("allow_blank", True)
    return field_class(
        required=False, openapi={**model_rules(model, name), **kwargs.pop("openapi", {})}, **kwargs
    )


@extend_schema_field(OpenApiTypes.STR)
class JSONTextField(serializers.Field):
    """JSON given as text (multipart forms) or as JSON itself; the service parses and judges it."""

    default_error_messages = {"invalid": "Expected JSON text."}

    def to_internal_value(self, data):
        if not isinstance(data, (str, list, dict)):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class MLModelCreateSerializer(InputSerializer):
    name = TextField(
        blank_refused=True,
        max_length=MLModel._meta.get_field("name").max_length,
        openapi={"pattern": MODEL_NAME_PATTERN},
        help_text="Any text but '/', '.' and '..'; spaces around it are dropped.",
    )
    description = TextField(allow_blank=True, required=False, default="")


class ModelVersionUploadSerializer(InputSerializer):
    artifact = UploadField(
        service_requires=True, allow_empty_file=True, help_text="A .skops file (or, trusted, .joblib / .pkl)."
    )
    input_schema = JSONTextField(
        required=False,
        help_text='JSON: [{"name": "sepal_length", "type": "number"}, ...] (types: number, integer, '
        'boolean, string; optional "categories", "other_values", "nullable"); read from the model when '
        "it was fitted on named columns: text columns and their values from its encoders, missing "
        "values where it imputes them (checked on sample rows).",
    )
    label_map = JSONTextField(required=False, help_text='JSON: {"0": "setosa", ...}')
    metrics = JSONTextField(required=False, help_text='JSON object: {"accuracy": 0.97}')
    example = JSONTextField(
        required=False,
        help_text='JSON: an example row of named features, {"sepal_length": 5.1, ...}, or a list of up '
        "to 5; checked against the schema (each wrong field named) and on the model. Without it, "
        "example rows are read from the model (imputer statistics, scaler means, encoder values, the "
        "middle of tree splits).",
    )
    trust_code = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Load a joblib or pickle file, which runs the code inside it.",
    )
    trusted_types = TextField(
        required=False,
        allow_blank=True,
        help_text="The skops type names you trust, exactly as a refused upload listed them (its "
        "`untrusted_types`): a JSON list, or names separated by commas. Each must be a class.",
    )


class EndpointSettingsSerializer(InputSerializer):
    description = model_field(Endpoint, "description")
    region = model_field(Endpoint, "region")
    cpu = model_field(
        Endpoint,
        "cpu",
        trim_whitespace=False,
        openapi={"pattern": CPU_ACCEPTED},
        help_text="vCPUs: 0.08 to 1, or a whole number up to 8 (or millicores: 80m to 1000m, 2000m...).",
    )
    memory = model_field(
        Endpoint,
        "memory",
        trim_whitespace=False,
        openapi={"pattern": MEMORY_SHAPE},
        help_text="512Mi, 4Gi...: Cloud Run takes 128Mi to 32Gi, within a range set by the CPU.",
    )
    min_instances = model_field(Endpoint, "min_instances")
    max_instances = model_field(Endpoint, "max_instances")
    concurrency = model_field(Endpoint, "concurrency")
    timeout_seconds = model_field(Endpoint, "timeout_seconds")
    access_mode = model_field(Endpoint, "access_mode")
    identity_issuer = model_field(
        Endpoint, "identity_issuer", help_text="Identity mode: the `iss` every token must carry (https URL)."
    )
    identity_audience = model_field(
        Endpoint,
        "identity_audience",
        help_text="Identity mode: the `aud` every token must carry (Google Cloud: empty is the service URL).",
    )
    identity_jwks_url = model_field(
        Endpoint, "identity_jwks_url", help_text="Identity mode: where the issuer publishes its signing keys."
    )
    identity_claim = model_field(
        Endpoint,
        "identity_claim",
        openapi={"pattern": CLAIM_OR_NOTHING},
        help_text="Identity mode: a claim every token must carry, as name=value (empty: none).",
    )
    identity_invokers = ServiceCheckedListField(
        child=serializers.JSONField(),
        required=False,
        openapi={
            "items": {"type": "string", "pattern": PRINCIPAL.pattern},
            "maxItems": MAX_INVOKERS,
        },
        help_text="Identity mode on Google Cloud: who may call (user:, serviceAccount:, group:, domain:).",
    )


class EndpointCreateSerializer(EndpointSettingsSerializer):
    # Checked here, not only by the service (which strips spaces): " iris" is no DNS name.
    name = TextField(
        blank_refused=True,
        trim_whitespace=False,
        max_length=Endpoint._meta.get_field("name").max_length,
        validators=[DNS_LABEL],
        help_text="A DNS-safe slug: lowercase letters, digits and hyphens, up to 40.",
    )


class DeployRequestSerializer(InputSerializer):
    model_version = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.select_related("model"))
    traffic_percent = WholeNumberField(
        required=False,
        openapi=model_rules(Deployment, "traffic_percent"),
        help_text=f"The new version's share, 1 to 100 ({FULL_TRAFFIC} when not given). A progressive "
        "deploy starts at its first step: leave it out (or give 100, the default), or give that step.",
    )
    progressive = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Roll out in steps: start at the first of `rollout_steps`, move to the next every "
        "`rollout_step_seconds` while the new revision is healthy over `rollout_window_seconds`, and "
        "roll back by itself as soon as it is not. Needs a version live and a runtime that splits "
        "traffic. The `rollout_*` fields apply only with it; each left out takes its ROLLOUT_* setting.",
    )
    rollout_steps = StatedListField(
        # Each item is checked by the service, which names the steps in one message.
        child=serializers.JSONField(allow_null=True),
        required=False,
        openapi={
            "items": {"type": "integer", "minimum": 1, "maximum": 100},
            "minItems": 2,
            "maxItems": MAX_STEPS,
        },
        help_text="The new version's shares in percent, rising, starting below 100 and ending at 100 "
        f"(default {settings.ROLLOUT_STEPS.replace(',', ', ')}).",
    )
    rollout_step_seconds = WholeNumberField(
        required=False,
        openapi=limits("rollout_step_seconds"),
        help_text=f"How long each step lasts at least (default {settings.ROLLOUT_STEP_SECONDS}).",
    )
    rollout_window_seconds = WholeNumberField(
        required=False,
        openapi={**limits("rollout_window_seconds"), "multipleOf": 60},
        help_text="The window the guard reads, in seconds, a whole number of minutes (default "
        f"{settings.ROLLOUT_WINDOW_SECONDS}).",
    )
    rollout_max_error_percent = StatedNumberField(
        required=False,
        openapi={"minimum": 0, "maximum": 100},
        help_text="The most of its requests the new revision may answer with a 5xx over the window "
        f"(default {settings.ROLLOUT_MAX_ERROR_PERCENT:g}).",
    )
    rollout_max_p99_ms = WholeNumberField(
        required=False,
        openapi=limits("rollout_max_p99_ms"),
        help_text="The slowest its p99 latency may be over the window, in milliseconds (default "
        f"{settings.ROLLOUT_MAX_P99_MS}).",
    )
    rollout_min_requests = WholeNumberField(
        required=False,
        openapi=limits("rollout_min_requests"),
        help_text="Requests the window must hold before the guard judges it; fewer hold the step "
        f"(default {settings.ROLLOUT_MIN_REQUESTS}).",
    )


class PlanRequestSerializer(DeployRequestSerializer):
    action = serializers.ChoiceField(
        choices=["deploy", "stop", "start", "delete"],
        default="deploy",
        help_text="The operation to plan; `model_version` is needed for a deploy only.",
    )
    model_version = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.select_related("model"), required=False
    )


class DeleteRequestSerializer(InputSerializer):
    # Optional here: a missing name is refused like a wrong one, by the service (422).
    confirm = TextField(
        required=False,
        default="",
        allow_blank=True,
        help_text="The endpoint's name, typed again to confirm the delete.",
    )


class AllowlistAddSerializer(InputSerializer):
    cidr = TextField(
        blank_refused=True, openapi={"pattern": CIDR_SHAPE}, help_text="203.0.113.0/24 or 2001:db8::1"
    )
    note = TextField(
        allow_blank=True, required=False, default="", help_text="Its first 200 characters are kept."
    )
    allow_everyone = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Needed to add 0.0.0.0/0 or ::/0, which let every address of that family in.",
    )


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})


@extend_schema_field(OpenApiTypes.INT)
class OwnTeamField(serializers.PrimaryKeyRelatedField):
    """A team the user belongs to (any team for admins).

    A team the user is not in is refused with the very words used for a team that does not
    exist, so a guessed id tells a member nothing about other teams.
    """

    default_error_messages = {"does_not_exist": UNKNOWN_TEAM, "incorrect_type": UNKNOWN_TEAM}

    def get_queryset(self):
        request = self.context.get("request")
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return Team.objects.none()
        return Team.objects.all() if user.is_staff else Team.objects.filter(members=user)

    def get_value(self, dictionary):
        value = super().get_value(dictionary)
        return None if html.is_html_input(dictionary) and value == "null" else value  # a form's null


@extend_schema_field({"type": "string", "pattern": DNS_LABEL.regex.pattern, "maxLength": 40})
class EndpointNameField(serializers.SlugRelatedField):
    """An endpoint by name: a name that is no DNS label is refused as such (400) before it is looked
    for; a DNS label no endpoint has is not there (422)."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="name", queryset=Endpoint.objects.filter(deleted_at=None), **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str) or not DNS_LABEL.regex.search(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class KeyRequestCreateSerializer(InputSerializer):
    endpoint = EndpointNameField()
    team = OwnTeamField(
        required=False,
        allow_null=True,
        help_text="The team the key is for; may be left out by a member of exactly one team.",
    )
    reason = TextField(
        blank_refused=True,
        openapi={"pattern": REASON_PATTERN},
        help_text="What will call the endpoint, and why: at least 10 characters.",
    )
    valid_days = WholeNumberField(
        required=False,
        allow_null=True,
        openapi={"minimum": 1, "maximum": settings.API_KEY_MAX_DAYS},
        help_text=f"1 to {settings.API_KEY_MAX_DAYS}; {settings.API_KEY_DEFAULT_DAYS} when not given.",
    )


class DecisionSerializer(InputSerializer):
    note = TextField(allow_blank=True, required=False, default="")


class LoadTestRequestSerializer(InputSerializer):
    users = WholeNumberField(
        service_requires=True,
        openapi={"minimum": 1, "maximum": settings.LOAD_TEST_MAX_USERS},
        help_text=f"Users sending requests at once, 1 to {settings.LOAD_TEST_MAX_USERS} "
        "(LOAD_TEST_MAX_USERS).",
    )
    spawn_rate = WholeNumberField(
        service_requires=True,
        openapi={"minimum": 1, "maximum": settings.LOAD_TEST_MAX_SPAWN_RATE},
        help_text=f"Users started per second, 1 to {settings.LOAD_TEST_MAX_SPAWN_RATE} "
        "(LOAD_TEST_MAX_SPAWN_RATE).",
    )
    duration_seconds = WholeNumberField(
        service_requires=True,
        openapi={"minimum": 1, "maximum": settings.LOAD_TEST_MAX_SECONDS},
        help_text=f"How long the test runs, 1 to {settings.LOAD_TEST_MAX_SECONDS} seconds "
        "(LOAD_TEST_MAX_SECONDS).",
    )


class KeyRotateSerializer(InputSerializer):
    overlap_hours = WholeNumberField(
        required=False,
        openapi={"minimum": 0, "maximum": MAX_OVERLAP_HOURS},
        help_text=f"Hours both keys work before the old one is revoked (0 to {MAX_OVERLAP_HOURS}; "
        f"{DEFAULT_OVERLAP_HOURS} when not given).",
    )
