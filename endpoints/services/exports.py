"""An endpoint's objects for a platform the portal does not drive itself: GitOps on Kubernetes."""

from django.core.exceptions import ImproperlyConfigured

from endpoints.models import Endpoint
from endpoints.services.deployments import deploy_spec_for
from endpoints.services.errors import ServiceError, Unprocessable
from worker.runtimes.base import PermanentError
from worker.runtimes.kubernetes import manifests
from worker.runtimes.kubernetes.config import KubernetesConfig


def kubernetes_manifests(endpoint: Endpoint) -> str:
    """The endpoint's Secret, Deployment, Service and HorizontalPodAutoscaler as YAML, the same
    objects the kubernetes runtime writes: its live version (else its latest deployment's) with
    its settings and access policy as they are now."""
    deployment = endpoint.live_deployment or (
        endpoint.deployments.filter(model_version__isnull=False).order_by("-id").first()
    )
    if deployment is None:
        raise ServiceError(
            f"{endpoint.name} has no deployment yet: its manifests name a model version; deploy one first.",
            code="conflict",
        )
    try:
        cfg = KubernetesConfig.from_settings()
    except ImproperlyConfigured as exc:
        raise ServiceError(f"The Kubernetes settings are not complete: {exc}", code="conflict") from None
    try:
        return manifests.as_yaml(manifests.endpoint_objects(cfg, deploy_spec_for(deployment)))
    except PermanentError as exc:
        raise Unprocessable(str(exc)) from None
