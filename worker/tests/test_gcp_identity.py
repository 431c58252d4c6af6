"""The identity mode on RUNTIME=gcp, against the fake Google servers: no gateway, Cloud Run's own
IAM check with the endpoint's invokers bound to roles/run.invoker, invoker edits applied at once."""

import pytest

from endpoints.models import AccessPolicyState, DeploymentStatus
from endpoints.services.access import access_apply
from endpoints.services.deployments import deployment_request
from endpoints.services.endpoints import endpoint_create, endpoint_update
from endpoints.services.operations import deployment_run
from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import PROJECT
from worker.runtimes.base import PermanentError
from worker.runtimes.gcp import iam

SERVICE = f"projects/{PROJECT}/locations/us-central1/services/scoring"
INVOKERS = ["group:ml-callers@example.com", "serviceAccount:batch@other-project.iam.gserviceaccount.com"]


@pytest.fixture
def fast(gcp_settings):
    gcp_settings.GCP_RETRY_INITIAL_SECONDS = 0.001
    gcp_settings.GCP_POLL_INTERVAL_SECONDS = 0.001
    return gcp_settings


def invokers_of(fakes, service=SERVICE) -> list[str]:
    bindings = [b for b in fakes.run.policy(service).bindings if b.role == iam.INVOKER]
    return sorted(member for binding in bindings for member in binding.members)


def deploy(admin, endpoint, version):
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=version)
    assert deployment_run(deployment_id=deployment.pk) == DeploymentStatus.READY, deployment.steps
    deployment.refresh_from_db()
    endpoint.refresh_from_db()
    return deployment


def test_an_identity_endpoint_goes_live_without_a_gateway_its_invokers_bound(
    fast, fakes, admin, iris_version
):
    endpoint = endpoint_create(user=admin, name="scoring", access_mode="identity", identity_invokers=INVOKERS)
    assert endpoint.identity_issuer == "https://accounts.google.com"

    deployment = deploy(admin, endpoint, iris_version)

    steps = [step["step"] for step in deployment.steps]
    assert "invokers" in steps
    assert not {"invoker", "gateway_config", "gateway"} & set(steps)
    assert fakes.gateway.methods() == []
    service = fakes.run.service(SERVICE)
    assert service.invoker_iam_disabled is False
    assert service.ingress.name == "INGRESS_TRAFFIC_ALL"
    assert list(service.custom_audiences) == []  # the service's URL is the audience
    assert invokers_of(fakes) == sorted(INVOKERS)
    assert "allUsers" not in str(fakes.run.policy(SERVICE))
    assert endpoint.gateway_url == "" and endpoint.url.endswith(".a.run.app")
    assert deployment.resources["invokers"] == INVOKERS


def test_a_custom_audience_is_set_on_the_service(fast, fakes, admin, iris_version):
    endpoint = endpoint_create(
        user=admin,
        name="scoring",
        access_mode="identity",
        identity_audience="https://scoring.example.com",
        identity_invokers=INVOKERS[:1],
    )
    deploy(admin, endpoint, iris_version)
    assert list(fakes.run.service(SERVICE).custom_audiences) == ["https://scoring.example.com"]


def test_invoker_edits_on_a_live_identity_endpoint_are_applied_at_once(fast, fakes, admin, iris_version):
    endpoint = endpoint_create(user=admin, name="scoring", access_mode="identity", identity_invokers=INVOKERS)
    deploy(admin, endpoint, iris_version)
    revisions = fakes.run.revision_ids(SERVICE)

    endpoint_update(user=admin, endpoint=endpoint, identity_invokers=["user:ada@example.com"])
    access_apply(endpoint_id=endpoint.pk)

    endpoint.refresh_from_db()
    assert invokers_of(fakes) == ["user:ada@example.com"]
    assert endpoint.access_state == AccessPolicyState.APPLIED
    assert fakes.run.revision_ids(SERVICE) == revisions  # no new revision


def test_switching_a_gateway_endpoint_to_identity_needs_a_deploy_which_drops_the_gateways_invoker(
    fast, fakes, admin, iris_version
):
    endpoint = endpoint_create(user=admin, name="scoring", access_mode="api_key")
    deploy(admin, endpoint, iris_version)
    assert invokers_of(fakes) == [f"serviceAccount:{fast.GCP_GATEWAY_SERVICE_ACCOUNT}"]

    endpoint_update(user=admin, endpoint=endpoint, access_mode="identity", identity_invokers=INVOKERS)
    access_apply(endpoint_id=endpoint.pk)
    endpoint.refresh_from_db()
    assert endpoint.access_state == AccessPolicyState.NEEDS_DEPLOY
    assert "Deploy the endpoint again" in endpoint.access_note
    assert invokers_of(fakes) == [f"serviceAccount:{fast.GCP_GATEWAY_SERVICE_ACCOUNT}"]

    deploy(admin, endpoint, iris_version)
    assert invokers_of(fakes) == sorted(INVOKERS)
    assert fakes.run.service(SERVICE).invoker_iam_disabled is False

    # And back behind the gateway: only the gateway may invoke again.
    endpoint_update(user=admin, endpoint=endpoint, access_mode="api_key")
    deploy(admin, endpoint, iris_version)
    assert invokers_of(fakes) == [f"serviceAccount:{fast.GCP_GATEWAY_SERVICE_ACCOUNT}"]


def test_binding_everyone_as_an_invoker_is_refused_before_any_call(fast, fakes, admin, iris_version):
    from endpoints.services.errors import ServiceError

    with pytest.raises(ServiceError, match="open access mode"):
        endpoint_create(user=admin, name="scoring", access_mode="identity", identity_invokers=["allUsers"])
    runtime_calls = fakes.run.methods()
    from worker.runtimes import get_runtime

    with pytest.raises(PermanentError, match="public"):
        iam.set_members(get_runtime().ctx, None, SERVICE, iam.INVOKER, ["allUsers"])
    assert fakes.run.methods() == runtime_calls
