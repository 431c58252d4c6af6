"""A fresh Google Cloud project, walked end to end on the fake Google servers through the portal's
own services: the doctor names each fix, the fixes (applied as `gcloud` would) make it pass; an
API-key and an allowlist endpoint deploy through Google's propagation delays; 120 redeploys stay
under API Gateway's config quota; both endpoints are deleted, and the project is left with nothing
the portal made."""

import grpc
import pytest

from endpoints.models import Deployment, DeploymentStatus
from endpoints.services.deployments import deployment_request
from endpoints.services.endpoints import endpoint_create
from endpoints.services.fronts import https_fronts_refresh
from endpoints.services.lifecycle import endpoint_delete
from endpoints.services.operations import deployment_run
from tests.fakes import gcloud
from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import PROJECT
from worker.runtimes import get_runtime
from worker.runtimes.base import TransientError
from worker.runtimes.gcp.doctor import run_checks

REDEPLOYS = 120


@pytest.fixture
def fast(gcp_settings):
    gcp_settings.GCP_RETRY_INITIAL_SECONDS = 0.001
    gcp_settings.GCP_POLL_INTERVAL_SECONDS = 0.001
    return gcp_settings


def run_to_the_end(operation: Deployment) -> Deployment:
    """Run an operation as the worker's task does: again after each wait or retryable error."""
    for _ in range(50):
        try:
            deployment_run(deployment_id=operation.pk)
        except TransientError:
            continue
        return Deployment.objects.get(pk=operation.pk)
    raise AssertionError(f"{operation} never finished")


def account_of(endpoint: str) -> str:
    return get_runtime().cfg.service_account_for(endpoint)


def test_a_fresh_project_is_set_up_from_the_doctors_fixes_served_and_left_clean(
    fast, fakes, admin, iris_version
):
    fakes.fresh()
    ctx = get_runtime().ctx

    # As an SRE would: run the doctor, apply every fix it prints, again until it passes (a check
    # on a bucket or an account is only made once it exists).
    rounds = []
    while failed := [check for check in run_checks(ctx) if not check.ok]:
        assert len(rounds) < 3 and all(check.fix for check in failed), failed
        rounds.append([check.name for check in failed])
        for check in failed:
            gcloud.apply(fakes, check.fix)
    assert len(rounds) == 2 and "API run.googleapis.com" in rounds[0]
    assert rounds[1] == ["Artifact bucket permissions", "Gateway service account use"]
    assert fakes.held() == {}

    keyed = endpoint_create(user=admin, name="iris-keys", access_mode="api_key")
    guarded = endpoint_create(user=admin, name="iris-guarded", access_mode="ip_allowlist")
    fakes.usage.operation_polls = 2  # the managed service's enable takes a while
    for endpoint in (keyed, guarded):
        # Cloud Run does not see the new account for a while.
        denied = (
            f"Permission 'iam.serviceaccounts.actAs' denied on service account {account_of(endpoint.name)} "
            "(or it may not exist)."
        )
        fakes.run.fail_next(2, grpc.StatusCode.PERMISSION_DENIED, denied, method="UpdateService")
        deployed = run_to_the_end(
            deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
        )
        assert deployed.status == DeploymentStatus.READY, deployed.error

    assert fakes.run.methods().count("UpdateService") == 6  # each deploy waited out two refusals
    assert fakes.usage.methods().count("GetOperation") == 2  # and polled the enable until done
    guarded.refresh_from_db()
    assert guarded.https_pending
    https_fronts_refresh()
    fakes.compute.set_certificate("iris-guarded-cert", "ACTIVE")
    https_fronts_refresh()
    guarded.refresh_from_db()
    assert not guarded.https_pending

    api = f"projects/{PROJECT}/locations/global/apis/iris-keys"
    for _ in range(REDEPLOYS):
        redeployed = run_to_the_end(
            deployment_request(user=admin, endpoint=keyed, model_version=iris_version)
        )
        assert redeployed.status == DeploymentStatus.READY, redeployed.error
    configs = [name for name in fakes.gateway.configs if name.startswith(f"{api}/")]
    assert len(configs) == ctx.cfg.keep_api_configs

    for endpoint in (keyed, guarded):
        endpoint.refresh_from_db()
        deleted = run_to_the_end(endpoint_delete(user=admin, endpoint=endpoint, confirm=endpoint.name))
        assert deleted.status == DeploymentStatus.DONE, deleted.error
    assert fakes.held() == {}
