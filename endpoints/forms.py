"""Dashboard forms: they turn posted text into Python values; the services decide what is valid.

A form checks types and required-ness only. Business rules (DNS-safe names, instance limits, CIDR
syntax, who may do what) live in the services, whose `ServiceError` the views put back on the
field it names, so the dashboard and the API refuse the same things with the same words.
"""

from django import forms
from django.conf import settings

from endpoints.models import AccessMode, Endpoint, ModelVersion, Team
from endpoints.services.deployments import FULL_TRAFFIC, check_canary, traffic_share
from endpoints.services.errors import ServiceError
from endpoints.services.keys import UNKNOWN_TEAM, default_team
from worker.runtimes import get_runtime

CPU_CHOICES = [("1", "1 vCPU"), ("2", "2 vCPU"), ("4", "4 vCPU"), ("8", "8 vCPU")]
MEMORY_CHOICES = [(size, size) for size in ("512Mi", "1Gi", "2Gi", "4Gi", "8Gi", "16Gi")]
NUMBER = forms.NumberInput(attrs={"inputmode": "numeric"})


def _default(field: str):
    return Endpoint._meta.get_field(field).default


def service_checked(field: forms.Field) -> forms.Field:
    """A field the form lets through empty so the service's own message says what is missing."""
    field.required = False
    field.service_required = True
    return field


def _with_current(choices: list[tuple[str, str]], value: str | None) -> list[tuple[str, str]]:
    """Keep a value set elsewhere (say, through the API) selectable when it is not a usual one."""
    if value and value not in {key for key, _ in choices}:
        return [(value, value), *choices]
    return choices


class LinesField(forms.CharField):
    """A list of strings, one a line (or separated by commas), shown one a line."""

    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list | tuple) else value

    def to_python(self, value) -> list[str]:
        text = super().to_python(value)
        return [item.strip() for item in text.replace(",", "\n").splitlines() if item.strip()]


class EndpointSettingsForm(forms.Form):
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    region = forms.CharField(max_length=40, initial=_default("region"))
    cpu = forms.ChoiceField(label="CPU", choices=CPU_CHOICES, initial=_default("cpu"))
    memory = forms.ChoiceField(choices=MEMORY_CHOICES, initial=_default("memory"))
    min_instances = forms.IntegerField(
        initial=_default("min_instances"), widget=NUMBER, help_text="0 lets the endpoint scale to zero."
    )
    max_instances = forms.IntegerField(initial=_default("max_instances"), widget=NUMBER)
    concurrency = forms.IntegerField(
        initial=_default("concurrency"), widget=NUMBER, help_text="Requests one instance handles at once."
    )
    timeout_seconds = forms.IntegerField(
        label="Timeout (seconds)", initial=_default("timeout_seconds"), widget=NUMBER
    )
    access_mode = forms.ChoiceField(
        choices=AccessMode.choices,
        initial=_default("access_mode"),
        help_text="What every call is checked for: an API key, the caller's address, both, a bearer "
        "token (identity), or nothing.",
    )
    # The identity mode's fields (endpoints.services.identity says what each runtime takes).
    identity_issuer = forms.CharField(
        label="Token issuer",
        required=False,
        max_length=300,
        help_text="The <code>iss</code> every token must carry, such as https://accounts.google.com.",
    )
    identity_audience = forms.CharField(
        label="Token audience",
        required=False,
        max_length=300,
        help_text="The <code>aud</code> every token must carry.",
    )
    identity_jwks_url = forms.CharField(
        label="JWKS URL",
        required=False,
        max_length=500,
        help_text="Where the issuer publishes its signing keys (https).",
    )
    identity_claim = forms.CharField(
        label="Required claim",
        required=False,
        max_length=300,
        help_text="A claim every token must carry, as name=value (a list claim passes if it holds "
        "the value).",
    )
    identity_invokers = LinesField(
        label="Invokers",
        required=False,
        help_text="Who may call, one a line: user:a@example.com, serviceAccount:..., group:..., domain:...",
    )

    def __init__(self, *args, endpoint: Endpoint | None = None, **kwargs):
        if endpoint is not None:
            kwargs.setdefault("initial", {name: getattr(endpoint, name) for name in self.base_fields})
        super().__init__(*args, **kwargs)
        if endpoint is not None:
            self.fields["cpu"].choices = _with_current(CPU_CHOICES, endpoint.cpu)
            self.fields["memory"].choices = _with_current(MEMORY_CHOICES, endpoint.memory)
        runtime = get_runtime()
        if refusal := runtime.min_instances_refusal(0):
            # Say up front what the service would refuse, and start a new endpoint at 1.
            self.fields["min_instances"].help_text = refusal
            if endpoint is None:
                self.fields["min_instances"].initial = 1
        self.describe_identity(runtime)
        for name in runtime.ignored_settings & set(self.fields):
            # Kept (a later move to another runtime uses it), but said plainly to do nothing here.
            field = self.fields[name]
            field.help_text = f"{field.help_text} Not used by the {runtime.name} runtime.".strip()
            field.widget.attrs["data-ignored"] = "true"

    def describe_identity(self, runtime) -> None:
        """Say who checks tokens on this runtime, and which fields it takes."""
        fields = self.fields
        if runtime.identity_check == "platform":
            for name, value in runtime.identity_defaults.items():
                fields[name].help_text += f" On {runtime.name}, the platform checks tokens: only {value}."
            fields["identity_audience"].help_text += " Empty: the service's own URL."
            fields["identity_claim"].help_text = f"Not used by the {runtime.name} runtime: name the invokers."
            fields["identity_claim"].widget.attrs["data-ignored"] = "true"
        else:
            fields["identity_invokers"].help_text = (
                f"Not used by the {runtime.name} runtime, where the serving process checks tokens: "
                "require a claim instead."
            )
            fields["identity_invokers"].widget.attrs["data-ignored"] = "true"


class EndpointCreateForm(EndpointSettingsForm):
    name = service_checked(
        forms.CharField(
            max_length=100,
            help_text="Lowercase letters, digits and hyphens, starting with a letter; it becomes a URL part.",
            widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "autofocus": True}),
        )
    )
    field_order = ["name", "description"]


class VersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, version: ModelVersion) -> str:
        estimator = version.estimator.rsplit(".", 1)[-1]
        return f"{version.model.name} v{version.number} · {estimator} · {version.created_at:%Y-%m-%d}"


class DeployForm(forms.Form):
    model_version = VersionChoiceField(
        queryset=ModelVersion.objects.none(), label="Model version", empty_label=None
    )
    traffic_percent = forms.IntegerField(
        label="Traffic %",
        required=False,
        initial=FULL_TRAFFIC,
        widget=NUMBER,
        help_text="Below 100 sends that share to the new version and the rest to the live one (a canary).",
    )

    # A progressive deploy (see endpoints.services.rollouts): offered with the share, when a
    # version is live and the runtime splits traffic. Empty fields take the ROLLOUT_* settings.
    progressive = forms.BooleanField(
        label="Progressive",
        required=False,
        help_text="Start at the first step, move on every step while the new version is healthy, and "
        "roll back by itself as soon as it is not (its 5xx share or p99 over the window).",
    )
    rollout_steps = forms.CharField(
        label="Steps (%)",
        required=False,
        help_text="Rising shares, ending at 100.",
        widget=forms.TextInput(attrs={"placeholder": settings.ROLLOUT_STEPS, "inputmode": "numeric"}),
    )
    rollout_step_seconds = forms.IntegerField(
        label="Each step (seconds)",
        required=False,
        widget=forms.NumberInput(
            attrs={"placeholder": settings.ROLLOUT_STEP_SECONDS, "inputmode": "numeric"}
        ),
    )
    rollout_window_seconds = forms.IntegerField(
        label="Window (seconds)",
        required=False,
        help_text="Whole minutes.",
        widget=forms.NumberInput(
            attrs={"placeholder": settings.ROLLOUT_WINDOW_SECONDS, "inputmode": "numeric"}
        ),
    )
    rollout_max_error_percent = forms.FloatField(
        label="Most 5xx (%)",
        required=False,
        widget=forms.NumberInput(
            attrs={"placeholder": f"{settings.ROLLOUT_MAX_ERROR_PERCENT:g}", "step": "any"}
        ),
    )
    rollout_max_p99_ms = forms.IntegerField(
        label="Slowest p99 (ms)",
        required=False,
        widget=forms.NumberInput(attrs={"placeholder": settings.ROLLOUT_MAX_P99_MS, "inputmode": "numeric"}),
    )
    rollout_min_requests = forms.IntegerField(
        label="Requests to judge",
        required=False,
        help_text="Fewer in the window hold the step.",
        widget=forms.NumberInput(
            attrs={"placeholder": settings.ROLLOUT_MIN_REQUESTS, "inputmode": "numeric"}
        ),
    )
    ROLLOUT_FIELDS = (
        "progressive",
        "rollout_steps",
        "rollout_step_seconds",
        "rollout_window_seconds",
        "rollout_max_error_percent",
        "rollout_max_p99_ms",
        "rollout_min_requests",
    )

    def __init__(self, *args, user, endpoint: Endpoint, chosen: str | None = None, **kwargs):
        """`chosen`: the id of a version to offer first ("Deploy this version" on its page)."""
        super().__init__(*args, **kwargs)
        self.endpoint = endpoint
        versions = ModelVersion.objects.for_user(user).select_related("model")
        self.fields["model_version"].queryset = versions
        live = endpoint.live_deployment
        if chosen and chosen.isdigit():
            self.fields["model_version"].initial = int(chosen)
        elif live is not None:
            newest = versions.filter(model_id=live.model_version.model_id).first()
            self.fields["model_version"].initial = newest
        if live is None or not get_runtime().supports_canary:
            # Nothing is live yet, or the runtime serves one version at a time: no traffic to share.
            for name in ("traffic_percent", *self.ROLLOUT_FIELDS):
                del self.fields[name]

    @property
    def rollout_fields(self) -> list:
        return [self[name] for name in self.ROLLOUT_FIELDS[1:] if name in self.fields]

    def clean(self):
        data = super().clean()
        raw = self.data.get("traffic_percent")
        if "traffic_percent" not in self.fields and raw not in (None, "", str(FULL_TRAFFIC)):
            # A share asked for where the form offers none (a page from before a deploy, a request
            # made by hand): refused now, in the service's words, never deployed at another share.
            try:
                share = traffic_share(int(raw) if raw.strip().isdigit() else raw)
                check_canary(share, self.endpoint)
            except ServiceError as exc:
                raise forms.ValidationError(exc.message) from None
        return data

    @property
    def has_versions(self) -> bool:
        return self.fields["model_version"].queryset.exists()


class MLModelCreateForm(forms.Form):
    name = service_checked(
        forms.CharField(
            max_length=100, widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "off"})
        )
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))


class VersionUploadForm(forms.Form):
    artifact = service_checked(
        forms.FileField(
            label="Model file",
            widget=forms.FileInput(attrs={"accept": ".skops,.joblib,.pkl,.pickle"}),
            help_text="A fitted scikit-learn estimator saved with <code>skops.io.dump</code>.",
        )
    )
    input_schema = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "class": "mono", "placeholder": '["age", "income"]'}),
        help_text=(
            "A JSON list of feature names, or of "
            '<code>{"name": ..., "type": "number"|"integer"|"boolean"|"string"}</code>, in column '
            'order, optionally with <code>"nullable": true|false</code> (may the value be missing?) '
            'and, for a closed set of values, <code>"categories"</code>. Leave empty when the model '
            "was fitted on a DataFrame: names, text columns with their values and missing values are "
            "read from the model."
        ),
    )
    label_map = forms.CharField(
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 2, "class": "mono", "placeholder": '{"0": "<=50K", "1": ">50K"}'}
        ),
        help_text="A JSON object from class to the label end users see.",
    )
    metrics = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "class": "mono", "placeholder": '{"accuracy": 0.97}'}),
        help_text="A JSON object, shown with the version.",
    )
    example = forms.CharField(
        required=False,
        label="Example row",
        widget=forms.Textarea(
            attrs={"rows": 2, "class": "mono", "placeholder": '{"age": 39, "workclass": "Private"}'}
        ),
        help_text=(
            "A typical input as a JSON object of named features (or a list of up to 5): the "
            "playground and the call examples start from it. It is checked against the schema and "
            "on the model. Leave empty to read typical values from the model (its imputers, "
            "scalers, encoders or tree splits)."
        ),
    )
    trusted_types = forms.CharField(
        required=False,
        label="Trusted types",
        widget=forms.Textarea(attrs={"rows": 2, "class": "mono", "spellcheck": "false"}),
        help_text=(
            "For a .skops file with types outside skops' default trust: the exact type names you "
            "accept, one a line. An upload that needs them lists them here for you to review."
        ),
    )
    trust_code = forms.BooleanField(required=False, label="I trust this file, it runs code when loaded")


class KeyRequestForm(forms.Form):
    endpoint = forms.ModelChoiceField(queryset=Endpoint.objects.none(), to_field_name="name")
    # Only the user's own teams are choices; any other id gets the words of the service's refusal.
    team = forms.ModelChoiceField(
        queryset=Team.objects.none(), error_messages={"invalid_choice": UNKNOWN_TEAM}
    )
    reason = service_checked(
        forms.CharField(
            widget=forms.Textarea(attrs={"rows": 3}),
            help_text="What will call the endpoint, and why. The admin who decides reads this.",
        )
    )
    valid_days = forms.IntegerField(
        label="Valid for (days)",
        required=False,
        widget=NUMBER,
        help_text=f"From 1 to {settings.API_KEY_MAX_DAYS} days.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = Endpoint.objects.for_user(user).filter(
            access_mode__in=[AccessMode.API_KEY, AccessMode.BOTH]
        )
        teams = Team.objects.all() if user.is_staff else Team.objects.filter(members=user)
        self.fields["team"].queryset = teams
        self.fields["team"].initial = teams[0] if len(teams) == 1 else default_team(user)
        self.fields["valid_days"].initial = settings.API_KEY_DEFAULT_DAYS


class DecisionForm(forms.Form):
    note = forms.CharField(required=False, max_length=2000)


class KeyRotateForm(forms.Form):
    overlap_hours = forms.IntegerField(
        required=False, label="Overlap (hours)", widget=NUMBER, help_text="Both keys work this long."
    )


class AllowlistEntryForm(forms.Form):
    cidr = service_checked(
        forms.CharField(
            label="Address or range",
            max_length=50,
            widget=forms.TextInput(
                attrs={"placeholder": "203.0.113.0/24 or 2001:db8::/32", "spellcheck": "false"}
            ),
        )
    )
    note = forms.CharField(
        required=False, max_length=200, widget=forms.TextInput(attrs={"placeholder": "Office VPN"})
    )
    # Sent by the confirmation the page shows before a range of every address is added.
    allow_everyone = forms.BooleanField(required=False, widget=forms.HiddenInput)


class DeleteEndpointForm(forms.Form):
    confirm = forms.CharField(
        label="Type the endpoint's name to confirm",
        max_length=40,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )


class CloudSetupForm(forms.Form):
    """Whom the Cloud setup page's fix commands grant roles to (the worker's principal)."""

    member = forms.RegexField(
        regex=r"^(serviceAccount|user|group):[\w.+-]+@[\w.-]+$",
        required=False,
        label="Grant roles to",
        error_messages={"invalid": "Give a principal as serviceAccount:, user: or group: and an e-mail."},
        widget=forms.TextInput(attrs={"class": "mono"}),
    )


class LoadTestForm(forms.Form):
    """Users, spawn rate and duration of a load test; the service checks them against the caps."""

    users = service_checked(forms.IntegerField(label="Users", widget=NUMBER))
    spawn_rate = service_checked(forms.IntegerField(label="Spawn rate (users per second)", widget=NUMBER))
    duration_seconds = service_checked(forms.IntegerField(label="Duration (seconds)", widget=NUMBER))

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "load-test-%s")  # ids unique on the endpoint page
        super().__init__(*args, **kwargs)
        caps = {
            "users": settings.LOAD_TEST_MAX_USERS,
            "spawn_rate": settings.LOAD_TEST_MAX_SPAWN_RATE,
            "duration_seconds": settings.LOAD_TEST_MAX_SECONDS,
        }
        for name, most in caps.items():
            field = self.fields[name]
            field.widget = forms.NumberInput(attrs={"inputmode": "numeric", "min": 1, "max": most})
            field.help_text = f"1 to {most}."
            field.initial = min(most, {"users": 5, "spawn_rate": 2, "duration_seconds": 30}[name])
