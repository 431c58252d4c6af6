"""The GCP runtime's settings, read once from Django settings and checked at start-up.

`portal/settings.py` calls `check_settings(globals())` when RUNTIME=gcp, so the web server, the
worker and beat refuse to start with a required value missing, naming it, instead of failing in
the middle of a deploy. This module imports nothing from Google.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from django.core.exceptions import ImproperlyConfigured

REQUIRED = (
    ("GCP_PROJECT", "the Google Cloud project id endpoints are deployed to"),
    ("GCP_SERVING_IMAGE", "the serving container image Cloud Run runs"),
    ("GCP_ARTIFACT_BUCKET", "the Cloud Storage bucket model artifacts are copied to"),
    ("GCP_GATEWAY_SERVICE_ACCOUNT", "the service account API Gateway calls Cloud Run as"),
    ("GCP_LB_DOMAIN", "the DNS domain under which allowlist endpoints get their HTTPS address"),
)

#: APIs whose endpoint can be overridden: GCP_API_ENDPOINT_OVERRIDES="run=insecure://127.0.0.1:9001,..."
APIS = ("run", "apigateway", "apikeys", "serviceusage", "compute", "storage", "iam")
SERVICE_ACCOUNT = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[-a-z0-9.]+\.iam\.gserviceaccount\.com$")


def check_settings(namespace) -> None:
    """Raise ImproperlyConfigured naming every required GCP setting that is empty."""
    missing = [f"{name} ({meaning})" for name, meaning in REQUIRED if not namespace.get(name)]
    if missing:
        raise ImproperlyConfigured("RUNTIME=gcp needs " + "; ".join(missing) + ".")
    parse_overrides(namespace.get("GCP_API_ENDPOINT_OVERRIDES", ""))
    template = namespace.get("GCP_SERVICE_ACCOUNT_TEMPLATE", "")
    if "{endpoint}" not in template:
        raise ImproperlyConfigured("GCP_SERVICE_ACCOUNT_TEMPLATE must contain {endpoint}.")
    if not SERVICE_ACCOUNT.match(namespace.get("GCP_GATEWAY_SERVICE_ACCOUNT", "")):
        raise ImproperlyConfigured(
            "GCP_GATEWAY_SERVICE_ACCOUNT must be a service account e-mail "
            "(name@project.iam.gserviceaccount.com)."
        )


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


@dataclass(frozen=True)
class GcpConfig:
    project: str
    serving_image: str
    artifact_bucket: str
    gateway_service_account: str
    lb_domain: str
    service_account_template: str = "ep-{endpoint}@{project}.iam.gserviceaccount.com"
    gateway_region: str = "us-central1"
    endpoint_overrides: dict = field(default_factory=dict)
    call_timeout: float = 30.0
    retry_attempts: int = 3
    retry_initial: float = 1.0
    rate_limit_wait: float = 30.0
    poll_interval: float = 2.0
    wait_seconds: float = 20.0
    operation_deadline: float = 1800.0
    armor_priority_start: int = 1000
    armor_priority_end: int = 1999

    @classmethod
    def from_settings(cls, settings=None) -> GcpConfig:
        if settings is None:
            from django.conf import settings
        checked = [name for name, _ in REQUIRED] + [
            "GCP_API_ENDPOINT_OVERRIDES",
            "GCP_SERVICE_ACCOUNT_TEMPLATE",
        ]
        namespace = {name: getattr(settings, name, "") for name in checked}
        check_settings(namespace)
        return cls(
            project=settings.GCP_PROJECT,
            serving_image=settings.GCP_SERVING_IMAGE,
            artifact_bucket=settings.GCP_ARTIFACT_BUCKET,
            gateway_service_account=settings.GCP_GATEWAY_SERVICE_ACCOUNT,
            lb_domain=settings.GCP_LB_DOMAIN,
            service_account_template=settings.GCP_SERVICE_ACCOUNT_TEMPLATE,
            gateway_region=settings.GCP_GATEWAY_REGION,
            endpoint_overrides=parse_overrides(settings.GCP_API_ENDPOINT_OVERRIDES),
            call_timeout=settings.GCP_CALL_TIMEOUT_SECONDS,
            retry_attempts=settings.GCP_RETRY_ATTEMPTS,
            retry_initial=settings.GCP_RETRY_INITIAL_SECONDS,
            rate_limit_wait=settings.GCP_RATE_LIMIT_WAIT_SECONDS,
            poll_interval=settings.GCP_POLL_INTERVAL_SECONDS,
            wait_seconds=settings.GCP_OPERATION_WAIT_SECONDS,
            operation_deadline=settings.GCP_OPERATION_DEADLINE_SECONDS,
            armor_priority_start=settings.GCP_ARMOR_PRIORITY_START,
            armor_priority_end=settings.GCP_ARMOR_PRIORITY_END,
        )

    def service_account_for(self, endpoint: str) -> str:
        """The endpoint's own service account; an account id over 30 characters is shortened with a hash."""
        email = self.service_account_template.format(endpoint=endpoint, project=self.project)
        account_id, _, domain = email.partition("@")
        if len(account_id) > 30:
            digest = hashlib.sha1(endpoint.encode()).hexdigest()[:6]
            account_id = f"{account_id[:23].rstrip('-')}-{digest}"
        return f"{account_id}@{domain}"
