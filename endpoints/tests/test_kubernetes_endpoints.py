"""Endpoints on RUNTIME=kubernetes: what is refused when it is asked, and the GitOps export (the
download on the endpoint page and `manage.py k8s_manifests`), validated against the Kubernetes
1.37 schemas."""

import io

import kubernetes_validate
import pytest
import yaml
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from endpoints.models import Deployment, Endpoint
from endpoints.services.deployments import deployment_request
from endpoints.services.endpoints import endpoint_create
from endpoints.services.errors import ServiceError


@pytest.fixture
def kubernetes(settings, tmp_path):
    settings.RUNTIME = "kubernetes"
    settings.KUBERNETES_NAMESPACE = "models"
    settings.KUBERNETES_IMAGE = "registry.example/model-serving:1"
    settings.KUBERNETES_ARTIFACT_CLAIM = "model-artifacts"
    settings.KUBERNETES_ARTIFACT_DIR = str(tmp_path / "artifacts")
    settings.KUBERNETES_SCALE_TO_ZERO = ""
    return settings


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def validated(text: str) -> list[dict]:
    objects = list(yaml.safe_load_all(text))
    for manifest in objects:
        kubernetes_validate.validate(manifest, "1.37.0", strict=True)
    return objects


def test_an_endpoint_with_no_minimum_instance_is_refused_when_it_is_made(kubernetes, admin):
    response = api(admin).post("/api/v1/endpoints/", {"name": "churn", "min_instances": 0}, format="json")

    assert response.status_code == 422
    assert response.json()["field"] == "min_instances"
    assert "KUBERNETES_SCALE_TO_ZERO" in response.json()["detail"]
    assert not Endpoint.objects.filter(name="churn").exists()

    created = api(admin).post("/api/v1/endpoints/", {"name": "churn", "min_instances": 1}, format="json")
    assert created.status_code == 201, created.json()


def test_a_scale_to_zero_controller_lets_an_endpoint_keep_no_instance(kubernetes, admin):
    kubernetes.KUBERNETES_SCALE_TO_ZERO = "keda"

    response = api(admin).post("/api/v1/endpoints/", {"name": "churn", "min_instances": 0}, format="json")

    assert response.status_code == 201, response.json()


def test_a_deploy_to_an_endpoint_left_at_no_minimum_is_refused_before_it_is_queued(
    settings, kubernetes, admin, iris_version
):
    settings.RUNTIME = "local"
    endpoint = endpoint_create(user=admin, name="legacy", min_instances=0)
    settings.RUNTIME = "kubernetes"

    with pytest.raises(ServiceError, match="keeps at least 1 instance") as refused:
        deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)

    assert refused.value.field == "min_instances"
    assert not Deployment.objects.filter(endpoint=endpoint).exists()


def test_a_canary_share_is_refused_on_kubernetes(kubernetes, admin, iris_version):
    endpoint = endpoint_create(user=admin, name="churn", min_instances=1)

    with pytest.raises(ServiceError, match="serves one version at a time"):
        deployment_request(user=admin, endpoint=endpoint, model_version=iris_version, traffic_percent=10)


def test_the_new_endpoint_form_starts_at_one_instance_and_says_why(kubernetes, admin, client):
    client.force_login(admin)

    page = client.get("/new-endpoint/").content.decode()

    assert 'name="min_instances" value="1"' in page
    assert "cannot scale to zero" in page


def test_an_admin_downloads_the_endpoints_objects_as_yaml_a_member_may_not(
    kubernetes, admin, member, client, iris_version
):
    endpoint = endpoint_create(user=admin, name="churn", min_instances=2, max_instances=6)
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    client.force_login(admin)

    assert "Kubernetes YAML" in client.get("/endpoints/churn/").content.decode()
    response = client.get("/endpoints/churn/kubernetes.yaml")

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="churn.k8s.yaml"'
    objects = validated(response.content.decode())
    kinds = [item["kind"] for item in objects]
    assert kinds == ["Secret", "Deployment", "Service", "HorizontalPodAutoscaler"]
    template = objects[1]["spec"]["template"]
    assert template["metadata"]["labels"]["model-endpoint-portal/revision"] == f"churn-d{deployment.pk}"
    assert (objects[3]["spec"]["minReplicas"], objects[3]["spec"]["maxReplicas"]) == (2, 6)

    client.force_login(member)
    assert client.get("/endpoints/churn/kubernetes.yaml").status_code == 403


def test_an_endpoint_never_deployed_has_no_manifests_to_download(kubernetes, admin, client):
    endpoint_create(user=admin, name="churn", min_instances=1)
    client.force_login(admin)

    response = client.get("/endpoints/churn/kubernetes.yaml", follow=True)

    assert response.redirect_chain[-1][0] == "/endpoints/churn/"
    assert "has no deployment yet" in response.content.decode()


def test_the_command_writes_the_same_objects_as_the_download(
    kubernetes, admin, client, iris_version, tmp_path
):
    endpoint = endpoint_create(user=admin, name="churn", min_instances=1)
    deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    client.force_login(admin)
    target = tmp_path / "churn.yaml"

    call_command("k8s_manifests", "churn", output=str(target), stderr=io.StringIO())
    printed = io.StringIO()
    call_command("k8s_manifests", "churn", stdout=printed)

    downloaded = client.get("/endpoints/churn/kubernetes.yaml").content.decode()
    assert validated(target.read_text()) == validated(printed.getvalue()) == validated(downloaded)
    with pytest.raises(CommandError, match="no endpoint named 'nothing'"):
        call_command("k8s_manifests", "nothing")
