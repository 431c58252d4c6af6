"""The fake Kubernetes API server's verbs and errors, through the official client."""

from __future__ import annotations

import base64
import json

import kubernetes
import pytest
from kubernetes.client import ApiException

from tests.fakes.tests.manifests import deployment, hpa, secret, service

NS = "models"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"


def failure(call, *args, **kwargs) -> tuple[int, dict]:
    with pytest.raises(ApiException) as caught:
        call(*args, **kwargs)
    return caught.value.status, json.loads(caught.value.body)


def test_load_kube_config_reaches_the_fake_and_its_namespace(fake_kubernetes):
    before = kubernetes.client.Configuration.get_default_copy()
    try:
        kubernetes.config.load_kube_config(config_file=fake_kubernetes.kubeconfig)
        namespace = kubernetes.client.CoreV1Api().read_namespace(fake_kubernetes.namespace)
    finally:
        kubernetes.client.Configuration.set_default(before)
    assert namespace.status.phase == "Active"
    assert fake_kubernetes.requests == [("GET", "/api/v1/namespaces/models")]
    assert fake_kubernetes.url.startswith("http://127.0.0.1:")


def test_a_call_without_the_token_is_unauthorized(fake_kubernetes):
    configuration = kubernetes.client.Configuration(host=fake_kubernetes.url)
    with kubernetes.client.ApiClient(configuration) as client:
        code, status = failure(kubernetes.client.CoreV1Api(client).list_namespaced_secret, NS)
    assert (code, status["reason"]) == (401, "Unauthorized")


def test_a_created_object_gets_a_uid_a_timestamp_a_resource_version_and_defaults(kube, fake_kubernetes):
    created = kube.apps.create_namespaced_deployment(NS, deployment())
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.metadata.generation == 1
    assert created.spec.strategy.rolling_update.max_surge == "25%"
    assert created.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
    second = kube.core.create_namespaced_secret(NS, secret())
    assert int(second.metadata.resource_version) > int(created.metadata.resource_version)
    assert fake_kubernetes.get("Deployment", "web")["metadata"]["uid"] == created.metadata.uid


def test_creating_a_taken_name_is_409_already_exists(kube):
    kube.apps.create_namespaced_deployment(NS, deployment())
    code, status = failure(kube.apps.create_namespaced_deployment, NS, deployment())
    assert (code, status["reason"]) == (409, "AlreadyExists")
    assert status["message"] == 'deployments.apps "web" already exists'


def test_reading_what_is_missing_is_404_not_found(kube):
    code, status = failure(kube.apps.read_namespaced_deployment, "web", NS)
    assert (code, status["reason"], status["details"]["name"]) == (404, "NotFound", "web")
    code, status = failure(kube.core.create_namespaced_secret, "elsewhere", secret())
    assert (code, status["message"]) == (404, 'namespaces "elsewhere" not found')


def test_a_write_with_a_stale_resource_version_is_409_conflict(kube):
    stale = kube.apps.create_namespaced_deployment(NS, deployment())
    kube.apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": 3}})
    stale.spec.replicas = 4
    code, status = failure(kube.apps.replace_namespaced_deployment, "web", NS, stale)
    assert (code, status["reason"]) == (409, "Conflict")
    assert "the object has been modified" in status["message"]
    patch = {"metadata": {"resourceVersion": stale.metadata.resource_version}, "spec": {"replicas": 5}}
    assert failure(kube.apps.patch_namespaced_deployment, "web", NS, patch)[0] == 409
    assert kube.apps.read_namespaced_deployment("web", NS).spec.replicas == 3


@pytest.mark.parametrize(
    ("make", "field", "words"),
    [
        (
            lambda: deployment(selector={"matchLabels": {"app": "other"}}),
            "spec.template.metadata.labels",
            "`selector` does not match template `labels`",
        ),
        (lambda: deployment(name="Web_1"), "metadata.name", "RFC 1123 subdomain"),
        (
            lambda: _limited(cpu_request="2", cpu_limit="500m"),
            "spec.template.spec.containers[0].resources.requests",
            "must be less than or equal to cpu limit of 500m",
        ),
        (lambda: _labelled("bad value!"), "metadata.labels", "a valid label must be an empty string"),
        (lambda: deployment(replicas=-1), "spec.replicas", "must be greater than or equal to 0"),
    ],
)
def test_an_invalid_deployment_is_422_naming_the_field(kube, make, field, words):
    code, status = failure(kube.apps.create_namespaced_deployment, NS, make())
    assert (code, status["reason"]) == (422, "Invalid")
    causes = status["details"]["causes"]
    assert field in [cause["field"] for cause in causes]
    assert words in status["message"]


def test_a_missing_required_field_is_422_field_value_required(raw):
    body = deployment()
    del body["spec"]["template"]["spec"]["containers"][0]["name"]
    answer = raw.post(DEPLOYMENTS, json=body)
    assert answer.status_code == 422
    assert answer.json()["details"]["causes"][0] == {
        "reason": "FieldValueRequired",
        "message": "Required value",
        "field": "spec.template.spec.containers[0].name",
    }


def test_an_hpa_below_one_replica_or_with_max_under_min_is_invalid(kube):
    code, status = failure(kube.autoscaling.create_namespaced_horizontal_pod_autoscaler, NS, hpa(minimum=0))
    assert (code, status["details"]["causes"][0]["field"]) == (422, "spec.minReplicas")
    code, status = failure(
        kube.autoscaling.create_namespaced_horizontal_pod_autoscaler, NS, hpa(minimum=3, maximum=2)
    )
    assert (code, status["details"]["causes"][0]["field"]) == (422, "spec.maxReplicas")


def test_a_service_name_must_be_a_dns_1035_label(kube):
    code, status = failure(kube.core.create_namespaced_service, NS, service(name="1web"))
    assert (code, status["details"]["causes"][0]["field"]) == (422, "metadata.name")
    assert "DNS-1035 label" in status["message"]


def test_an_unknown_field_is_dropped_with_a_warning_or_refused_when_strict(raw, fake_kubernetes):
    body = deployment()
    body["spec"]["replicaCount"] = 3
    answer = raw.post(DEPLOYMENTS, json=body, params={"fieldValidation": "Strict"})
    assert (answer.status_code, answer.json()["message"]) == (
        400,
        'strict decoding error: unknown field "spec.replicaCount"',
    )
    answer = raw.post(DEPLOYMENTS, json=body)
    assert answer.status_code == 201
    assert answer.headers["Warning"] == '299 - "unknown field \\"spec.replicaCount\\""'
    assert fake_kubernetes.warnings == ['unknown field "spec.replicaCount"']
    assert "replicaCount" not in fake_kubernetes.get("Deployment", "web")["spec"]


def test_a_value_of_the_wrong_type_is_400_bad_request(raw):
    body = deployment()
    body["spec"]["replicas"] = "two"
    answer = raw.post(DEPLOYMENTS, json=body)
    assert (answer.status_code, answer.json()["reason"]) == (400, "BadRequest")
    assert "spec.replicas" in answer.json()["message"]


def test_a_strategic_merge_patch_merges_containers_by_name(kube):
    kube.apps.create_namespaced_deployment(NS, deployment())
    patch = {
        "metadata": {"annotations": {"portal/revision": "7"}},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "serving:2"}]}}},
    }
    patched = kube.apps.patch_namespaced_deployment("web", NS, patch)
    container = patched.spec.template.spec.containers[0]
    assert (container.image, container.ports[0].container_port) == ("serving:2", 8080)
    assert patched.metadata.annotations["portal/revision"] == "7"
    assert patched.metadata.generation == 2


def test_a_merge_patch_replaces_lists_and_a_json_patch_applies_operations(kube):
    kube.apps.create_namespaced_deployment(NS, deployment())
    merge = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "serving:3"}]}}}}
    patched = kube.apps.patch_namespaced_deployment(
        "web", NS, merge, _content_type="application/merge-patch+json"
    )
    assert patched.spec.template.spec.containers[0].ports is None
    operations = [{"op": "replace", "path": "/spec/replicas", "value": 4}]
    assert kube.apps.patch_namespaced_deployment("web", NS, operations).spec.replicas == 4
    missing = [{"op": "replace", "path": "/spec/nothing/here", "value": 1}]
    assert failure(kube.apps.patch_namespaced_deployment, "web", NS, missing)[0] == 422


def test_a_replace_that_changes_nothing_keeps_the_resource_version_and_generation(kube):
    created = kube.apps.create_namespaced_deployment(NS, deployment())
    again = kube.apps.replace_namespaced_deployment("web", NS, deployment())
    assert again.metadata.resource_version == created.metadata.resource_version
    assert again.metadata.generation == 1
    changed = kube.apps.replace_namespaced_deployment("web", NS, deployment(image="serving:2"))
    assert changed.metadata.generation == 2


def test_a_list_filters_by_label_selector(kube):
    for name, tier in (("one", "api"), ("two", "api"), ("three", "batch")):
        body = secret(name)
        body["metadata"]["labels"] = {"tier": tier, "team": "ml"}
        kube.core.create_namespaced_secret(NS, body)
    names = [
        s.metadata.name for s in kube.core.list_namespaced_secret(NS, label_selector="tier=api,team=ml").items
    ]
    assert names == ["one", "two"]
    others = kube.core.list_namespaced_secret(NS, label_selector="tier!=api").items
    assert [s.metadata.name for s in others] == ["three"]
    assert len(kube.core.list_namespaced_secret(NS, label_selector="tier in (api,batch)").items) == 3


def test_a_secret_keeps_string_data_as_base64_and_refuses_bad_base64(kube):
    stored = kube.core.create_namespaced_secret(NS, secret(stringData={"key": "s3cret"}))
    assert stored.data == {"key": base64.b64encode(b"s3cret").decode()}
    assert stored.type == "Opaque"
    code, status = failure(
        kube.core.create_namespaced_secret, NS, secret("other", data={"key": "not base64!"})
    )
    assert (code, status["reason"]) == (400, "BadRequest")


def test_a_service_gets_a_cluster_ip_that_a_put_without_one_keeps(kube):
    created = kube.core.create_namespaced_service(NS, service())
    assert created.spec.cluster_ip.startswith("10.96.")
    assert created.spec.ports[0].protocol == "TCP"
    replaced = kube.core.replace_namespaced_service("web", NS, service())
    assert replaced.spec.cluster_ip == created.spec.cluster_ip


def test_deleting_a_deployment_deletes_its_replica_sets_and_pods(kube, fake_kubernetes):
    kube.apps.create_namespaced_deployment(NS, deployment())
    kube.apps.read_namespaced_deployment("web", NS)
    assert len(fake_kubernetes.list("Pod")) == 2
    status = kube.apps.delete_namespaced_deployment("web", NS, propagation_policy="Foreground")
    assert status["status"] == "Success"
    assert fake_kubernetes.list("ReplicaSet") == fake_kubernetes.list("Pod") == []


def test_deleting_with_orphan_leaves_the_replica_sets_without_their_owner(kube, fake_kubernetes):
    kube.apps.create_namespaced_deployment(NS, deployment())
    kube.apps.read_namespaced_deployment("web", NS)
    kube.apps.delete_namespaced_deployment("web", NS, propagation_policy="Orphan")
    (replica_set,) = fake_kubernetes.list("ReplicaSet")
    assert replica_set["metadata"]["ownerReferences"] == []
    assert len(fake_kubernetes.list("Pod")) == 2


def test_server_side_apply_creates_then_updates(kube, fake_kubernetes):
    def apply(body):
        return kube.apps.patch_namespaced_deployment(
            "web", NS, body, field_manager="portal", _content_type="application/apply-patch+yaml"
        )

    assert apply(deployment()).metadata.generation == 1
    assert apply(deployment(image="serving:2")).spec.template.spec.containers[0].image == "serving:2"
    code, status = failure(
        kube.apps.patch_namespaced_deployment,
        "web",
        NS,
        deployment(),
        _content_type="application/apply-patch+yaml",
    )
    assert (code, status["reason"]) == (422, "Invalid")


def test_the_scale_subresource_reads_and_sets_replicas(kube):
    kube.apps.create_namespaced_deployment(NS, deployment())
    scale = kube.apps.read_namespaced_deployment_scale("web", NS)
    assert (scale.spec.replicas, scale.status.selector) == (2, "app=web")
    kube.apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 0}})
    assert kube.apps.read_namespaced_deployment("web", NS).spec.replicas == 0


def test_a_dry_run_validates_without_storing(kube, fake_kubernetes):
    kube.apps.create_namespaced_deployment(NS, deployment(), dry_run="All")
    assert fake_kubernetes.get("Deployment", "web") is None
    assert (
        failure(kube.apps.create_namespaced_deployment, NS, deployment(name="Bad"), dry_run="All")[0] == 422
    )


def test_the_request_log_counts_every_call(kube, fake_kubernetes):
    kube.core.create_namespaced_secret(NS, secret())
    kube.core.read_namespaced_secret("web-key", NS)
    kube.core.read_namespaced_secret("web-key", NS)
    assert fake_kubernetes.requests == [
        ("POST", "/api/v1/namespaces/models/secrets"),
        ("GET", "/api/v1/namespaces/models/secrets/web-key"),
        ("GET", "/api/v1/namespaces/models/secrets/web-key"),
    ]


def _limited(*, cpu_request: str, cpu_limit: str) -> dict:
    body = deployment()
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": cpu_request},
        "limits": {"cpu": cpu_limit},
    }
    return body


def _labelled(value: str) -> dict:
    body = deployment()
    body["metadata"]["labels"]["tier"] = value
    return body


@pytest.mark.parametrize(("reason", "code"), [("ServiceUnavailable", 503), ("TooManyRequests", 429)])
def test_an_injected_failure_answers_as_the_api_server_and_the_next_call_goes_through(
    kube, fake_kubernetes, reason, code
):
    fake_kubernetes.fail_next(1, reason, route="POST")
    answer, status = failure(kube.core.create_namespaced_secret, NS, secret())
    assert (answer, status["reason"], status["kind"]) == (code, reason, "Status")
    assert fake_kubernetes.get("Secret", "web-key") is None
    kube.core.create_namespaced_secret(NS, secret())
    assert fake_kubernetes.get("Secret", "web-key") is not None


def test_a_failure_after_the_call_took_effect_leaves_the_object_made(kube, fake_kubernetes):
    fake_kubernetes.fail_next(1, "Timeout", after=True)
    assert failure(kube.core.create_namespaced_secret, NS, secret())[0] == 504
    assert failure(kube.core.create_namespaced_secret, NS, secret())[1]["reason"] == "AlreadyExists"


def test_a_list_with_a_limit_pages_with_a_continue_token(kube):
    for name in ("a", "b", "c", "d", "e"):
        kube.core.create_namespaced_secret(NS, secret(name))
    first = kube.core.list_namespaced_secret(NS, limit=2)
    assert [s.metadata.name for s in first.items] == ["a", "b"]
    assert first.metadata.remaining_item_count == 3
    second = kube.core.list_namespaced_secret(NS, limit=2, _continue=first.metadata.var_continue)
    third = kube.core.list_namespaced_secret(NS, limit=2, _continue=second.metadata.var_continue)
    assert [s.metadata.name for s in second.items + third.items] == ["c", "d", "e"]
    assert third.metadata.var_continue is None
    assert failure(kube.core.list_namespaced_secret, NS, _continue="nonsense")[0] == 400


def test_a_path_the_api_does_not_serve_is_a_404_status(raw):
    answer = raw.get(f"/apis/batch/v1/namespaces/{NS}/cronjobs")
    assert (answer.status_code, answer.json()["kind"], answer.json()["reason"]) == (404, "Status", "NotFound")


def test_creating_an_object_that_carries_a_resource_version_is_refused(raw):
    body = secret()
    body["metadata"]["resourceVersion"] = "12"
    answer = raw.post(f"/api/v1/namespaces/{NS}/secrets", json=body)
    assert (answer.status_code, answer.json()["message"]) == (
        500,
        "resourceVersion should not be set on objects to be created",
    )


def test_a_node_port_service_gets_a_node_port_that_a_put_keeps(kube):
    body = service()
    body["spec"]["type"] = "NodePort"
    created = kube.core.create_namespaced_service(NS, body)
    port = created.spec.ports[0].node_port
    assert 30000 <= port <= 32767
    assert kube.core.replace_namespaced_service("web", NS, body).spec.ports[0].node_port == port


def test_namespaces_are_listed_and_a_deployment_list_spans_them(kube):
    kube.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "staging"}})
    assert [n.metadata.name for n in kube.core.list_namespace().items] == ["models", "staging"]
    kube.apps.create_namespaced_deployment(NS, deployment())
    kube.apps.create_namespaced_deployment("staging", deployment())
    found = kube.apps.list_deployment_for_all_namespaces().items
    assert [(d.metadata.namespace, d.metadata.name) for d in found] == [("models", "web"), ("staging", "web")]
