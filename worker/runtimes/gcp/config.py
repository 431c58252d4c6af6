"""The GCP runtime's settings: each listed once in `SETTINGS`, read once, checked at start-up.

`portal/settings.py` reads every setting of `SETTINGS` from the environment, with its default, and
calls `check_settings(globals())` when RUNTIME=gcp, so the web server, the worker and beat refuse to
start with a required value missing, naming it, instead of failing in the middle of a deploy.
`GcpConfig.from_settings()` fills the runtime's config from the same table. This module imports
nothing from Google.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from worker.runtimes.setting import Setting, config_fields, from_django_settings

#: APIs whose endpoint can be overridden: GCP_API_ENDPOINT_OVERRIDES="run=insecure://127.0.0.1:9001,..."
APIS = (
    "run",
    "apigateway",
    "apikeys",
    "serviceusage",
    "compute",
    "storage",
    "iam",
    "resourcemanager",
    "logging",
    "monitoring",
)
SERVICE_ACCOUNT = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[-a-z0-9.]+\.iam\.gserviceaccount\.com$")


def parse_overrides(value: str) -> dict[str, str]:
    """`"run=insecure://127.0.0.1:9001,compute=http://127.0.0.1:9002"` -> {"run": ..., "compute": ...}."""
    overrides = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        api, sep, endpoint = item.partition("=")
        if not sep or api not in APIS or not endpoint:
            raise ImproperlyConfigured(
                f"GCP_API_ENDPOINT_OVERRIDES: {item!r} is not <api>=<endpoint> "
                f"with <api> one of {', '.join(APIS)}."
            )
        overrides[api] = endpoint
    return overrides


#: Every GCP_* setting, once (the README's configuration table lists the same names and defaults).
SETTINGS = (
    Setting("GCP_PROJECT", "project", required="the Google Cloud project id endpoints are deployed to"),
    Setting("GCP_SERVING_IMAGE", "serving_image", required="the serving container image Cloud Run runs"),
    # The Dockerfile's serving-onnx image, for versions served from their ONNX form; empty: the one above.
    Setting("GCP_SERVING_IMAGE_ONNX", "serving_image_onnx"),
    Setting(
        "GCP_ARTIFACT_BUCKET",
        "artifact_bucket",
        required="the Cloud Storage bucket model artifacts are copied to",
    ),
    Setting(
        "GCP_GATEWAY_SERVICE_ACCOUNT",
        "gateway_service_account",
        required="the service account API Gateway calls Cloud Run as",
    ),
    Setting(
        "GCP_LB_DOMAIN",
        "lb_domain",
        required="the DNS domain under which allowlist endpoints get their HTTPS address",
    ),
    Setting(
        "GCP_SERVICE_ACCOUNT_TEMPLATE",
        "service_account_template",
        "ep-{endpoint}@{project}.iam.gserviceaccount.com",
    ),
    Setting("GCP_GATEWAY_REGION", "gateway_region", "us-central1"),
    Setting("GCP_API_ENDPOINT_OVERRIDES", "endpoint_overrides", "", parse=parse_overrides),
    Setting("GCP_CALL_TIMEOUT_SECONDS", "call_timeout", 30.0),
    Setting("GCP_RETRY_ATTEMPTS", "retry_attempts", 3),
    Setting("GCP_RETRY_INITIAL_SECONDS", "retry_initial", 1.0),
    Setting("GCP_RATE_LIMIT_WAIT_SECONDS", "rate_limit_wait", 30.0),
    Setting("GCP_POLL_INTERVAL_SECONDS", "poll_interval", 2.0),
    Setting("GCP_OPERATION_WAIT_SECONDS", "wait_seconds", 20.0),
    Setting("GCP_OPERATION_DEADLINE_SECONDS", "operation_deadline", 1800.0),
    Setting("GCP_ARMOR_PRIORITY_START", "armor_priority_start", 1000),
    Setting("GCP_ARMOR_PRIORITY_END", "armor_priority_end", 1999),
    # A worker that found the project ready trusts that for this long before checking again.
    Setting("GCP_READY_CHECK_SECONDS", "ready_check_seconds", 600.0),
    # How long a deploy waits for a service account it made to be usable everywhere.
    Setting("GCP_PROPAGATION_WAIT_SECONDS", "propagation_wait", 420.0),
    # API configs a key endpoint keeps (the live one and the newest before it, to roll back to).
    Setting("GCP_KEEP_API_CONFIGS", "keep_api_configs", 5),
)


def check_settings(namespace: Mapping[str, Any]) -> None:
    """Raise ImproperlyConfigured naming every required GCP setting that is empty."""
    missing = [
        f"{item.name} ({item.required})"
        for item in SETTINGS
        if item.required and not namespace.get(item.name)
    ]
    if missing:
        raise ImproperlyConfigured("RUNTIME=gcp needs " + "; ".join(missing) + ".")
    parse_overrides(namespace.get("GCP_API_ENDPOINT_OVERRIDES", ""))
    template = namespace.get("GCP_SERVICE_ACCOUNT_TEMPLATE", "")
    if "{endpoint}" not in template:
        raise ImproperlyConfigured("GCP_SERVICE_ACCOUNT_TEMPLATE must contain {endpoint}.")
    if int(namespace.get("GCP_KEEP_API_CONFIGS", 5)) < 1:
        raise ImproperlyConfigured("GCP_KEEP_API_CONFIGS must be at least 1 (the live config).")
    if not SERVICE_ACCOUNT.match(namespace.get("GCP_GATEWAY_SERVICE_ACCOUNT", "")):
        raise ImproperlyConfigured(
            "GCP_GATEWAY_SERVICE_ACCOUNT must be a service account e-mail "
            "(name@project.iam.gserviceaccount.com)."
        )


@dataclass(frozen=True)
class GcpConfig:
    """The GCP runtime's settings, as the runtime uses them; `SETTINGS` says where each comes from."""

    project: str
    serving_image: str
    serving_image_onnx: str
    artifact_bucket: str
    gateway_service_account: str
    lb_domain: str
    service_account_template: str
    gateway_region: str
    endpoint_overrides: dict[str, str]
    call_timeout: float
    retry_attempts: int
    retry_initial: float
    rate_limit_wait: float
    poll_interval: float
    wait_seconds: float
    operation_deadline: float
    armor_priority_start: int
    armor_priority_end: int
    ready_check_seconds: float
    propagation_wait: float
    keep_api_configs: int

    @classmethod
    def from_settings(cls) -> GcpConfig:
        """The config from the Django settings (which `portal/settings.py` reads as `SETTINGS` says)."""
        return cls.from_values(from_django_settings(SETTINGS))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> GcpConfig:
        """The config from GCP_* values by setting name, checked; a setting not given takes its default."""
        return cls(**config_fields(SETTINGS, values, check_settings))

    def image_for(self, model_format: str) -> str:
        """The serving image Cloud Run runs for an artifact of this format."""
        if model_format == "onnx" and self.serving_image_onnx:
            return self.serving_image_onnx
        return self.serving_image

    def service_account_for(self, endpoint: str) -> str:
        """The endpoint's own service account. IAM takes account ids of 6 to 30 characters: a shorter
        one is padded, a longer one cut, each with a hash of the endpoint's name, so the id is the same
        at every deploy of the endpoint and differs between endpoints."""
        email = self.service_account_template.format(endpoint=endpoint, project=self.project)
        account_id, _, domain = email.partition("@")
        digest = hashlib.sha1(endpoint.encode()).hexdigest()[:6]
        if len(account_id) > 30:
            account_id = f"{account_id[:23].rstrip('-')}-{digest}"
        elif len(account_id) < 6:
            account_id = f"{account_id}-{digest}"
        return f"{account_id}@{domain}"
