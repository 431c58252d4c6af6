"""API Gateway and Service Usage steps of a deploy, on the fake servers, with the exact requests."""

import json

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import apigateway_v1 as gw

from tests.fakes.api_gateway import document_problems
from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import GATEWAY_SA, PROJECT, make_spec, run_steps
from worker.runtimes.base import KeySpec, PermanentError, TransientError
from worker.runtimes.gcp import gateway

API = f"projects/{PROJECT}/locations/global/apis/iris-prod"
GATEWAY = f"projects/{PROJECT}/locations/us-central1/gateways/iris-prod"


def sent_document(fakes, index=-1) -> dict:
    request = fakes.gateway.requests("CreateApiConfig")[index]
    (document,) = request.api_config.openapi_documents
    return json.loads(document.document.contents)


def test_a_first_key_deploy_creates_the_api_a_config_and_the_gateway_and_enables_the_service(
    gcp, fakes, artifact
):
    resources = run_steps(gcp, make_spec(artifact, deployment_id=7, timeout_seconds=900))

    assert fakes.gateway.methods() == [
        "CreateApi",
        "GetOperation",
        "CreateApiConfig",
        "GetOperation",
        "CreateGateway",
        "GetOperation",
        "GetGateway",  # pruning: the config it serves stays
        "ListApiConfigs",  # one config: none to delete
    ]
    # The first read is the project check's (are the APIs enabled?).
    assert fakes.usage.methods() == ["BatchGetServices", "GetService", "EnableService", "GetOperation"]
    managed = resources["managed_service"]
    assert managed.endswith(f".apigateway.{PROJECT}.cloud.goog")
    assert fakes.usage.requests("EnableService")[0].name == f"projects/{PROJECT}/services/{managed}"

    request = fakes.gateway.requests("CreateApiConfig")[0]
    assert request.parent == API
    assert request.api_config_id == "iris-prod-d7"
    assert request.api_config.gateway_service_account == GATEWAY_SA
    doc = sent_document(fakes)
    assert doc["swagger"] == "2.0"
    assert doc["x-google-backend"] == {
        "address": resources["run_url"],
        "path_translation": "APPEND_PATH_TO_ADDRESS",
        "deadline": 900.0,
    }
    assert doc["securityDefinitions"] == {"api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}}
    assert doc["security"] == [{"api_key": []}]
    assert {path: sorted(item) for path, item in doc["paths"].items()} == {
        "/predict": ["post"],
        "/v1/model": ["get"],
        "/v2/models/iris": ["get"],
        "/v2/models/iris/infer": ["post"],
        "/v2/models/iris/versions/1": ["get"],
        "/v2/models/iris/versions/1/infer": ["post"],
    }
    assert document_problems(doc) == []

    (create,) = fakes.gateway.requests("CreateGateway")
    assert create.parent == f"projects/{PROJECT}/locations/us-central1"
    assert create.gateway_id == "iris-prod"
    assert create.gateway.api_config == f"{API}/configs/iris-prod-d7"
    assert resources["gateway_url"] == f"https://{fakes.gateway.gateways[GATEWAY].default_hostname}"
    assert resources["api_config_id"] == "iris-prod-d7"


def test_a_later_deploy_adds_a_config_and_repoints_the_gateway_and_reads_what_to_prune(gcp, fakes, artifact):
    first = run_steps(gcp, make_spec(artifact, deployment_id=1))
    fakes.clear_calls()

    second = run_steps(gcp, make_spec(artifact, deployment_id=2, previous=first))

    assert fakes.gateway.methods() == [
        "CreateApiConfig",
        "GetOperation",
        "UpdateGateway",
        "GetOperation",
        "GetGateway",
        "ListApiConfigs",
    ]
    assert fakes.usage.methods() == []
    (update,) = fakes.gateway.requests("UpdateGateway")
    assert update.gateway.name == GATEWAY
    assert list(update.update_mask.paths) == ["api_config"]
    assert fakes.gateway.gateways[GATEWAY].api_config == f"{API}/configs/iris-prod-d2"
    assert sorted(fakes.gateway.configs) == [f"{API}/configs/iris-prod-d1", f"{API}/configs/iris-prod-d2"]
    assert second["gateway_url"] == first["gateway_url"]


def test_a_retried_config_create_that_meets_its_own_config_is_success(gcp, fakes, artifact):
    # The create lands but its answer is lost (UNKNOWN); our retry meets AlreadyExists.
    fakes.gateway.fail_next(
        1, grpc.StatusCode.UNKNOWN, "Stream removed", method="CreateApiConfig", after=True
    )

    resources = run_steps(gcp, make_spec(artifact, deployment_id=3))

    assert fakes.gateway.methods().count("CreateApiConfig") == 2
    assert "GetApiConfig" in fakes.gateway.methods()
    assert list(fakes.gateway.configs) == [f"{API}/configs/iris-prod-d3"]
    assert resources["config_operation"] == ""
    assert resources["gateway_url"]


def test_a_config_id_taken_by_another_document_fails_the_step(gcp, fakes, artifact):
    first = run_steps(gcp, make_spec(artifact, deployment_id=3))

    with pytest.raises(PermanentError, match="already exists with another document"):
        run_steps(
            gcp, make_spec(artifact, deployment_id=3, timeout_seconds=30), first, only=("gateway_config",)
        )


def test_running_every_gateway_step_twice_keeps_one_config_and_one_gateway(gcp, fakes, artifact):
    resources = {}
    for step in gcp.deploy_steps(make_spec(artifact, deployment_id=4)):
        resources.update(step.run(resources).resources)
        resources.update(step.run(resources).resources)

    assert list(fakes.gateway.configs) == [f"{API}/configs/iris-prod-d4"]
    assert list(fakes.gateway.gateways) == [GATEWAY]
    assert list(fakes.gateway.apis) == [API]


def test_a_64_character_config_id_is_refused_as_google_would(gcp, fakes, artifact):
    run_steps(gcp, make_spec(artifact), only=("revision", "revision_ready", "gateway_config"))
    client = gcp.ctx.clients.gateway()
    config = gw.ApiConfig(
        openapi_documents=[
            gw.ApiConfig.OpenApiDocument(document=gw.ApiConfig.File(path="a.json", contents=b"{}"))
        ]
    )

    with pytest.raises(gexc.InvalidArgument, match="at most 63 characters"):
        client.create_api_config(parent=API, api_config_id="c" * 64, api_config=config)
    client.create_api_config(parent=API, api_config_id="c" * 63, api_config=config)


def test_the_101st_config_of_an_api_is_refused_as_the_quota_says(gcp, fakes, artifact):
    run_steps(gcp, make_spec(artifact), only=("revision", "revision_ready", "gateway_config"))
    client = gcp.ctx.clients.gateway()
    config = gw.ApiConfig(
        openapi_documents=[
            gw.ApiConfig.OpenApiDocument(document=gw.ApiConfig.File(path="a.json", contents=b"{}"))
        ]
    )
    for number in range(2, 101):  # the deploy made the first
        client.create_api_config(parent=API, api_config_id=f"c{number}", api_config=config)

    with pytest.raises(gexc.ResourceExhausted, match="100 API configs per API"):
        client.create_api_config(parent=API, api_config_id="c101", api_config=config)
    assert len(fakes.gateway.configs) == 100


def test_the_51st_api_of_a_project_is_refused_as_the_quota_says(gcp, fakes):
    client = gcp.ctx.clients.gateway()
    parent = f"projects/{PROJECT}/locations/global"
    for number in range(50):
        client.create_api(parent=parent, api_id=f"api-{number}", api=gw.Api())

    with pytest.raises(gexc.ResourceExhausted, match="50 APIs"):
        client.create_api(parent=parent, api_id="api-50", api=gw.Api())


def test_a_gateway_id_over_49_characters_is_refused_as_google_would(gcp, fakes, artifact):
    made = run_steps(gcp, make_spec(artifact), only=("revision", "revision_ready", "gateway_config"))
    client = gcp.ctx.clients.gateway()
    parent = GATEWAY.rsplit("/gateways/", 1)[0]
    gateway_of = gw.Gateway(api_config=made["api_config"])

    with pytest.raises(gexc.InvalidArgument, match="at most 49 characters"):
        client.create_gateway(parent=parent, gateway_id="g" * 50, gateway=gateway_of)
    client.create_gateway(parent=parent, gateway_id="g" * 49, gateway=gateway_of)


def test_an_endpoint_of_the_longest_name_deploys_its_api_config_and_gateway(gcp, fakes, artifact):
    name = "e" * 40  # the portal's longest endpoint name
    made = run_steps(gcp, make_spec(artifact, endpoint=name, deployment_id=10**9))

    assert made["gateway"].endswith(f"/gateways/{name}")
    assert made["api_config_id"] == f"{name}-d{10**9}"


def test_a_config_id_over_63_characters_fails_before_any_call(gcp, fakes, artifact):
    spec = make_spec(artifact, endpoint="e" * 40, deployment_id=10**21)

    with pytest.raises(PermanentError, match="at most 63"):
        gateway.config_id(spec)


def test_a_document_the_gateway_refuses_fails_with_its_diagnostics(gcp, fakes, artifact, monkeypatch):
    def no_operation_ids(spec, backend):
        doc = {"swagger": "2.0", "info": {"title": "x", "version": "1"}, "paths": {"/predict": {"post": {}}}}
        return json.dumps(doc).encode()

    monkeypatch.setattr(gateway, "config_document", no_operation_ids)

    with pytest.raises(PermanentError) as failure:
        run_steps(gcp, make_spec(artifact, deployment_id=5))

    assert "Cannot convert to service config" in str(failure.value)
    assert "operation does not have the required 'operationId' field" in str(failure.value)


def test_an_api_made_earlier_by_a_key_issue_is_found_not_made_twice(gcp, fakes, artifact):
    gcp.issue_key(KeySpec(endpoint="iris-prod", key_id="r1", display_name="early key"))
    fakes.clear_calls()

    resources = run_steps(gcp, make_spec(artifact, deployment_id=1))

    assert fakes.gateway.methods()[:2] == ["CreateApi", "GetApi"]
    assert list(fakes.gateway.apis) == [API]
    assert resources["managed_service"] == fakes.gateway.apis[API].managed_service


def test_the_managed_service_is_not_enabled_again_by_later_deploys(gcp, fakes, artifact):
    first = run_steps(gcp, make_spec(artifact, deployment_id=1))
    fakes.usage.clear_calls()

    run_steps(gcp, make_spec(artifact, deployment_id=2, previous=first))

    assert fakes.usage.methods() == []


def test_an_allowlist_or_open_endpoint_has_no_gateway(gcp, fakes, artifact):
    for mode in ("ip_allowlist", "open"):
        names = [step.name for step in gcp.deploy_steps(make_spec(artifact, mode=mode))]
        assert not any(name.startswith("gateway") for name in names)


def test_the_managed_service_is_enabled_once_the_config_is_active_and_its_operation_polled(
    gcp, fakes, artifact, clock
):
    spec = make_spec(artifact, deployment_id=1)
    steps = {step.name: step for step in gcp.deploy_steps(spec)}
    names = list(steps)
    assert names.index("gateway_config_ready") < names.index("managed_service") < names.index("gateway")
    resources = run_steps(gcp, spec, only=tuple(names[: names.index("managed_service")]))
    fakes.usage.operation_polls = 2  # the enable takes a while
    fakes.usage.clear_calls()

    resources.update(steps["managed_service"].run(resources).resources)
    assert resources["enable_operation"].startswith("operations/acf.")

    # A worker that died before the journal saw the step done runs it again: the enable still
    # runs, and Google refuses a second one, so the step waits instead of failing.
    with pytest.raises(TransientError, match="another activation is still running") as busy:
        steps["managed_service"].run(resources)
    assert busy.value.retry_after == gateway.ACTIVATION_BUSY_SECONDS

    steps["managed_service_ready"].run(resources)  # polls until done
    assert fakes.usage.methods() == [
        "GetService",
        "EnableService",
        "GetService",
        "EnableService",
        "GetOperation",
        "GetOperation",
    ]
    assert steps["managed_service"].run(resources).message.endswith("is enabled")
