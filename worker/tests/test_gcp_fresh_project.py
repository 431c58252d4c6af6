"""A fresh Google Cloud project, walked end to end on the fake Google servers through the portal's
own services: the doctor names each fix, the fixes (applied as `gcloud` would) make it pass; an
API-key and an allowlist endpoint deploy through Google's propagation delays (the fakes' own: a new
account unseen by Cloud Run, a bucket grant that does not hold yet, an enable that takes a while)
and Compute's per-minute write limit;
120 redeploys stay under API Gateway's config quota; both endpoints are deleted, and the project is
left with nothing the portal made.

The runtime and the fakes share one clock (`on_the_clock`): a retry countdown moves it, as the
worker's would pass, so Google's minutes cost nothing here.
"""

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
from worker.tasks import backoff

REDEPLOYS = 120


def run_to_the_end(operation: Deployment, clock, waits: list | None = None) -> Deployment:
    """Run an operation as the worker's task does: again after each wait or retryable error, once
    the task's countdown has passed. Each wait's message goes to `waits`."""
    for failures in range(1, 200):
        try:
            deployment_run(deployment_id=operation.pk)
        except TransientError as exc:
            if waits is not None:
                waits.append(str(exc))
            clock.sleep(backoff(failures, exc))
            continue
        return Deployment.objects.get(pk=operation.pk)
    raise AssertionError(f"{operation} never finished")


def test_a_fresh_project_is_set_up_from_the_doctors_fixes_served_and_left_clean(
    on_the_clock, fakes, admin, iris_version
):
    clock = on_the_clock
    fakes.fresh()
    ctx = get_runtime().ctx

    # As an SRE would: run the doctor, apply every fix it prints, again until it passes (a check
    # on an API, a bucket or an account is only made once it is there).
    rounds = []
    while failed := [check for check in run_checks(ctx) if not check.ok]:
        assert len(rounds) < 4 and all(check.fix for check in failed), failed
        rounds.append([check.name for check in failed])
        for check in failed:
            gcloud.apply(fakes, check.fix)
    # The APIs first (the checks that ask them wait), then what they let the doctor see, then the
    # use of the account made in the round before.
    assert "API run.googleapis.com" in rounds[0] and "Artifact bucket" in rounds[0]
    assert "Gateway service account" in rounds[1] and "Role roles/run.admin" in rounds[1]
    assert rounds[2] == ["Gateway service account use"]
    assert fakes.held() == {}

    keyed = endpoint_create(user=admin, name="iris-keys", access_mode="api_key")
    guarded = endpoint_create(user=admin, name="iris-guarded", access_mode="ip_allowlist")
    fakes.usage.operation_polls = 2  # the managed service's enable takes a while
    fakes.compute.writes_per_minute = 4  # a load balancer chain takes more writes than that
    for endpoint in (keyed, guarded):
        started, waits = clock.time(), []
        deployed = run_to_the_end(
            deployment_request(user=admin, endpoint=endpoint, model_version=iris_version), clock, waits
        )
        assert deployed.status == DeploymentStatus.READY, deployed.error
        # Cloud Run did not see the new account at first, and its container could not read the
        # model until the bucket grant held: the deploy waited for both.
        assert any("Cloud Run does not see ep-iris" in wait for wait in waits), waits
        assert any(f"Cloud Run revision {endpoint.name}-" in wait for wait in waits), waits
        assert clock.time() - started >= fakes.project.act_as_delay
        if endpoint is guarded:
            assert any("Write requests per minute" in wait for wait in waits), waits

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
            deployment_request(user=admin, endpoint=keyed, model_version=iris_version), clock
        )
        assert redeployed.status == DeploymentStatus.READY, redeployed.error
    configs = [name for name in fakes.gateway.configs if name.startswith(f"{api}/")]
    assert len(configs) == ctx.cfg.keep_api_configs

    for endpoint in (keyed, guarded):
        endpoint.refresh_from_db()
        deleted = run_to_the_end(endpoint_delete(user=admin, endpoint=endpoint, confirm=endpoint.name), clock)
        assert deleted.status == DeploymentStatus.DONE, deleted.error
    assert fakes.held() == {}
