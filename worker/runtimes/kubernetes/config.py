"""The kubernetes runtime's settings: each listed once in `SETTINGS`, read once, checked at start-up.

`portal/settings.py` reads every setting of `SETTINGS` from the environment, with its default, and
calls `check_settings(globals())` when RUNTIME=kubernetes, so the web server, the worker and beat
refuse to start with a required value missing, naming it. `KubernetesConfig.from_settings()` fills
the runtime's config from the same table. This module imports nothing from the Kubernetes client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from worker.runtimes.setting import Setting, config_fields, from_django_settings

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

#: Every KUBERNETES_* setting, once (the README's kubernetes section lists the same names).
SETTINGS = (
    # Empty: the in-cluster service account's credentials (the worker runs in the cluster).
    Setting("KUBERNETES_KUBECONFIG", "kubeconfig"),
    Setting("KUBERNETES_CONTEXT", "context"),
    Setting("KUBERNETES_NAMESPACE", "namespace", required="the namespace endpoints are deployed to"),
    Setting("KUBERNETES_IMAGE", "image", required="the serving image the pods run"),
    # The Dockerfile's serving-onnx image, for versions served from their ONNX form; empty: the one above.
    Setting("KUBERNETES_IMAGE_ONNX", "image_onnx"),
    Setting(
        "KUBERNETES_ARTIFACT_CLAIM",
        "artifact_claim",
        required="the PersistentVolumeClaim holding model artifacts, which the pods mount read-only",
    ),
    Setting(
        "KUBERNETES_ARTIFACT_DIR",
        "artifact_dir",
        required="where the worker has the same volume mounted, to copy artifacts to",
    ),
    Setting("KUBERNETES_CPU_TARGET", "cpu_target", 70),
    # The controller that takes an idle endpoint's Deployment to 0 replicas and back ("keda",
    # "knative", ...); empty: an endpoint's minimum of 0 instances is refused.
    Setting("KUBERNETES_SCALE_TO_ZERO", "scale_to_zero"),
    Setting("KUBERNETES_URL_TEMPLATE", "url_template", "http://{endpoint}.{namespace}.svc.cluster.local"),
    Setting("KUBERNETES_PROGRESS_DEADLINE_SECONDS", "progress_deadline", 600),
    Setting("KUBERNETES_CALL_TIMEOUT_SECONDS", "call_timeout", 30.0),
    Setting("KUBERNETES_POLL_INTERVAL_SECONDS", "poll_interval", 2.0),
    # How long one run of a waiting step polls before it gives the worker back (Pending).
    Setting("KUBERNETES_WAIT_SECONDS", "wait_seconds", 20.0),
)


def check_settings(namespace: Mapping[str, Any]) -> None:
    """Raise ImproperlyConfigured naming every required KUBERNETES_ setting that is empty, or a
    value the runtime cannot use."""
    missing = [
        f"{item.name} ({item.required})"
        for item in SETTINGS
        if item.required and not namespace.get(item.name)
    ]
    if missing:
        raise ImproperlyConfigured("RUNTIME=kubernetes needs " + "; ".join(missing) + ".")
    if not DNS_LABEL.match(namespace["KUBERNETES_NAMESPACE"]):
        raise ImproperlyConfigured("KUBERNETES_NAMESPACE must be a DNS label (lowercase letters, digits, -).")
    if not 1 <= int(namespace.get("KUBERNETES_CPU_TARGET", 70)) <= 100:
        raise ImproperlyConfigured("KUBERNETES_CPU_TARGET must be a percentage of the CPU request, 1 to 100.")
    if int(namespace.get("KUBERNETES_PROGRESS_DEADLINE_SECONDS", 600)) < 30:
        raise ImproperlyConfigured("KUBERNETES_PROGRESS_DEADLINE_SECONDS must be at least 30.")
    if "{endpoint}" not in namespace.get("KUBERNETES_URL_TEMPLATE", "{endpoint}"):
        raise ImproperlyConfigured("KUBERNETES_URL_TEMPLATE must contain {endpoint}.")


@dataclass(frozen=True)
class KubernetesConfig:
    """The kubernetes runtime's settings, as the runtime uses them; `SETTINGS` says where each comes from."""

    kubeconfig: str
    context: str
    namespace: str
    image: str
    image_onnx: str
    artifact_claim: str
    artifact_dir: str
    cpu_target: int
    scale_to_zero: str
    url_template: str
    progress_deadline: int
    call_timeout: float
    poll_interval: float
    wait_seconds: float

    @classmethod
    def from_settings(cls) -> KubernetesConfig:
        """The config from the Django settings (which `portal/settings.py` reads as `SETTINGS` says)."""
        return cls.from_values(from_django_settings(SETTINGS))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> KubernetesConfig:
        """The config from KUBERNETES_* values by setting name, checked; one not given takes its default."""
        return cls(**config_fields(SETTINGS, values, check_settings))

    def image_for(self, model_format: str) -> str:
        """The serving image the pods run for an artifact of this format."""
        if model_format == "onnx" and self.image_onnx:
            return self.image_onnx
        return self.image

    def url_for(self, endpoint: str) -> str:
        return self.url_template.format(endpoint=endpoint, namespace=self.namespace)
