"""The kubernetes runtime's objects, checked offline against the Kubernetes 1.37 OpenAPI schemas
(kubernetes-validate, strict: an unknown field fails too), and its settings."""

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
from django.core.exceptions import ImproperlyConfigured

from worker.runtimes.base import AccessPolicy, DeploySpec, KeyRecord, ModelSpec, PermanentError, Resources
from worker.runtimes.kubernetes import manifests
from worker.runtimes.kubernetes.config import KubernetesConfig, check_settings
from worker.tests.settings_table import assert_readme_lists

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.37.0"
VALUES = {
    "KUBERNETES_NAMESPACE": "models",
    "KUBERNETES_IMAGE": "registry.example/model-serving:1",
    "KUBERNETES_ARTIFACT_CLAIM": "model-artifacts",
    "KUBERNETES_ARTIFACT_DIR": "/mnt/model-artifacts",
}


def validate(manifest: dict) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


@pytest.fixture
def cfg():
    return KubernetesConfig.from_values(VALUES)


def make_spec(**resources) -> DeploySpec:
    model = ModelSpec(
        name="iris",
        version=3,
        artifact_path="/nowhere/iris.skops",
        sha256="ab" * 32,
        format="skops",
        input_schema=({"name": "sepal_length", "type": "number"},),
        classes=(0, 1),
    )
    return DeploySpec(
        endpoint="iris",
        deployment_id=7,
        model=model,
        resources=Resources(**{"min_instances": 1, "max_instances": 4, **resources}),
        access=AccessPolicy(mode="both", keys=(KeyRecord("mep_abcdefgh", "f" * 64),), cidrs=("10.0.0.0/8",)),
    )


def test_every_object_of_an_endpoint_validates_against_the_kubernetes_schemas(cfg):
    objects = manifests.endpoint_objects(cfg, make_spec(cpu="500m", memory="1Gi"))

    assert [item["kind"] for item in objects] == [
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
    ]
    for manifest in objects:
        validate(manifest)
    validate(manifests.deployment(cfg, make_spec(), "iris-d7", replicas=0))


def test_a_field_kubernetes_does_not_know_fails_the_validation(cfg):
    deployment = manifests.deployment(cfg, make_spec(), "iris-d7")
    deployment["spec"]["template"]["spec"]["containers"][0]["readyProbe"] = {}

    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)


def test_the_pods_run_as_non_root_on_a_read_only_root_and_drain_before_they_are_killed(cfg):
    template = manifests.deployment(cfg, make_spec(cpu="2", memory="2Gi"), "iris-d7")["spec"]["template"]
    pod = template["spec"]
    container = pod["containers"][0]

    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    from serving.supervisor import STOP_DEADLINE

    assert pod["terminationGracePeriodSeconds"] > manifests.PRESTOP_SECONDS + STOP_DEADLINE
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["SERVING_MODEL_URI"] == f"/models/{'ab' * 32}.skops"
    assert env["SERVING_ACCESS_FILE"] == "/etc/model-endpoint-access/access.json"
    assert env["SERVING_WORKERS"] == "2" and env["SERVING_REVISION"] == "iris-d7"
    assert template["metadata"]["labels"][manifests.REVISION_LABEL] == "iris-d7"


def test_a_rollout_never_takes_a_serving_pod_away_before_its_replacement_is_ready(cfg):
    spec = manifests.deployment(cfg, make_spec(), "iris-d7")["spec"]

    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert spec["progressDeadlineSeconds"] == 600
    assert "replicas" not in spec  # left to the autoscaler


def test_the_access_secret_carries_the_hashes_and_is_mounted_as_a_whole_directory(cfg):
    spec = make_spec()
    secret = manifests.access_secret(cfg, "iris", spec.access)
    pod = manifests.deployment(cfg, spec, "iris-d7")["spec"]["template"]["spec"]

    assert manifests.policy_of(secret) == spec.access.as_json()
    assert "mep_abcdefgh" not in str(secret["data"])
    mount = next(item for item in pod["containers"][0]["volumeMounts"] if item["name"] == "access")
    assert "subPath" not in mount  # a subPath mount never sees the Secret change
    assert {"name": "access", "secret": {"secretName": "iris-access", "defaultMode": 0o444}} in pod["volumes"]


def test_the_autoscaler_spans_the_endpoints_instances_on_the_cpu_target(cfg):
    hpa = manifests.autoscaler(cfg, "iris", Resources(min_instances=2, max_instances=5))

    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_a_minimum_of_zero_instances_is_refused_without_a_scale_to_zero_controller(cfg):
    with pytest.raises(PermanentError, match="KUBERNETES_SCALE_TO_ZERO"):
        manifests.autoscaler(cfg, "iris", Resources(min_instances=0))

    keda = KubernetesConfig.from_values({**VALUES, "KUBERNETES_SCALE_TO_ZERO": "keda"})
    hpa = manifests.autoscaler(keda, "iris", Resources(min_instances=0, max_instances=3))
    assert hpa["spec"]["minReplicas"] == 1
    validate(hpa)


def test_a_name_kubernetes_would_refuse_is_refused_before_any_call(cfg):
    with pytest.raises(PermanentError, match="cannot name Kubernetes objects"):
        manifests.service(cfg, "9lives")


def test_the_settings_name_what_is_missing_and_refuse_what_cannot_work():
    with pytest.raises(ImproperlyConfigured) as missing:
        check_settings({"KUBERNETES_NAMESPACE": "models"})
    for name in ("KUBERNETES_IMAGE", "KUBERNETES_ARTIFACT_CLAIM", "KUBERNETES_ARTIFACT_DIR"):
        assert name in str(missing.value)
    assert "KUBERNETES_NAMESPACE" not in str(missing.value)

    with pytest.raises(ImproperlyConfigured, match="KUBERNETES_CPU_TARGET"):
        check_settings({**VALUES, "KUBERNETES_CPU_TARGET": 0})
    with pytest.raises(ImproperlyConfigured, match="DNS label"):
        check_settings({**VALUES, "KUBERNETES_NAMESPACE": "Models"})


def test_the_portal_refuses_to_start_with_runtime_kubernetes_and_no_image():
    import os

    env = {key: value for key, value in os.environ.items() if not key.startswith("KUBERNETES_")}
    env.update(RUNTIME="kubernetes", DJANGO_SETTINGS_MODULE="portal.settings", KUBERNETES_NAMESPACE="models")
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "RUNTIME=kubernetes needs KUBERNETES_IMAGE" in result.stderr


def test_the_readme_lists_every_setting_with_its_default():
    from worker.runtimes.kubernetes.config import SETTINGS

    assert_readme_lists(SETTINGS, "KUBERNETES_", "kubernetes")
