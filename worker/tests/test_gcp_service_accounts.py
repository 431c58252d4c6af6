"""The endpoint's own service account: made through IAM Admin when missing, on the fake IAM server.

The real google-cloud-iam client talks gRPC to tests/fakes/iam_admin.py; each test asserts the
exact requests IAM would have received.
"""

import grpc
import pytest

from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import PROJECT, make_spec, run_steps
from worker.runtimes.base import Pending, PermanentError
from worker.runtimes.gcp.config import GcpConfig
from worker.runtimes.gcp.runtime import GcpRuntime
from worker.runtimes.gcp.steps import PROPAGATION_POLL_SECONDS

SERVING_SA = f"ep-iris-prod@{PROJECT}.iam.gserviceaccount.com"


def test_a_first_deploy_creates_the_endpoints_service_account_before_anything_runs_as_it(
    gcp, fakes, artifact
):
    spec = make_spec(artifact, deployment_id=1)

    names = [step.name for step in gcp.deploy_steps(spec)]
    resources = run_steps(gcp, spec)

    assert names[:4] == ["preconditions", "service_account", "artifact", "revision"]
    # The project check reads the gateway's account first; then the endpoint's is looked for and made.
    assert fakes.iam.methods() == [
        "GetServiceAccount",
        "TestIamPermissions",
        "GetServiceAccount",
        "CreateServiceAccount",
    ]
    get = fakes.iam.requests("GetServiceAccount")[-1]
    assert get.name == f"projects/{PROJECT}/serviceAccounts/{SERVING_SA}"
    (create,) = fakes.iam.requests("CreateServiceAccount")
    assert create.name == f"projects/{PROJECT}"
    assert create.account_id == "ep-iris-prod"
    assert create.service_account.display_name == "Model endpoint iris-prod"
    assert create.service_account.description == (
        "Runs the Cloud Run revisions of the portal endpoint iris-prod."
    )
    assert fakes.iam.emails(PROJECT) == [SERVING_SA]
    assert resources["service_account"] == SERVING_SA
    assert fakes.run.requests("UpdateService")[0].service.template.service_account == SERVING_SA


def test_an_account_an_administrator_made_is_read_and_not_created_again(gcp, fakes, artifact):
    fakes.iam.add(SERVING_SA, display_name="made by ops")

    run_steps(gcp, make_spec(artifact), only=("service_account",))

    assert fakes.iam.methods() == ["GetServiceAccount"]
    assert fakes.iam.accounts[(PROJECT, SERVING_SA)].display_name == "made by ops"


def test_a_second_deploy_of_the_same_endpoint_makes_no_iam_call(gcp, fakes, artifact):
    first = run_steps(gcp, make_spec(artifact, deployment_id=1))
    fakes.clear_calls()

    second = run_steps(gcp, make_spec(artifact, deployment_id=2, previous=first))

    assert fakes.iam.methods() == []
    assert second["service_account"] == SERVING_SA


def test_every_access_mode_makes_the_account_first(gcp, fakes, artifact):
    for mode in ("api_key", "both", "ip_allowlist", "open"):
        names = [step.name for step in gcp.deploy_steps(make_spec(artifact, mode=mode))]
        assert names[:2] == ["preconditions", "service_account"]
        assert names.index("service_account") < names.index("revision")


def test_a_retried_create_that_meets_already_exists_succeeds(gcp, fakes, artifact, clock):
    # The first create is done by IAM but its answer is lost; the retry finds the account there.
    fakes.iam.fail_next(1, grpc.StatusCode.UNAVAILABLE, method="CreateServiceAccount", after=True)

    (step,) = [step for step in gcp.deploy_steps(make_spec(artifact)) if step.name == "service_account"]
    result = step.run({})

    assert fakes.iam.methods() == ["GetServiceAccount", "CreateServiceAccount", "CreateServiceAccount"]
    assert len(clock.sleeps) == 1
    assert fakes.iam.emails(PROJECT) == [SERVING_SA]
    assert result.resources == {
        "service_account": SERVING_SA,
        "service_account_created": True,
        "service_account_made_at": clock.time(),
    }
    assert "created" in result.message


def test_a_create_the_worker_may_not_make_fails_the_step_with_googles_message(gcp, fakes, artifact, clock):
    fakes.iam.fail_next(
        1,
        grpc.StatusCode.PERMISSION_DENIED,
        "Permission 'iam.serviceAccounts.create' denied on resource (or it may not exist).",
        method="CreateServiceAccount",
    )

    with pytest.raises(PermanentError) as failure:
        run_steps(gcp, make_spec(artifact), only=("service_account",))

    assert str(failure.value) == (
        f"Create the service account {SERVING_SA}: Permission 'iam.serviceAccounts.create' denied "
        "on resource (or it may not exist). (PERMISSION_DENIED)"
    )
    assert fakes.iam.methods() == ["GetServiceAccount", "CreateServiceAccount"]
    assert clock.sleeps == []
    assert fakes.iam.emails(PROJECT) == []


def test_a_long_endpoint_name_gets_the_shortened_account_id_and_iam_accepts_it(gcp, fakes, artifact):
    endpoint = "a-rather-long-endpoint-name-for-fraud"
    account = gcp.cfg.service_account_for(endpoint)
    account_id = account.partition("@")[0]

    resources = run_steps(gcp, make_spec(artifact, endpoint=endpoint), only=("service_account",))

    (create,) = fakes.iam.requests("CreateServiceAccount")
    assert create.account_id == account_id
    assert len(account_id) == 30 and account_id.startswith("ep-a-rather-long-endpoi-")
    assert fakes.iam.emails(PROJECT) == [account]
    assert resources["service_account"] == account


def test_the_fake_refuses_account_ids_iam_refuses(gcp, fakes):
    client = gcp.ctx.clients.iam_admin()
    for account_id, message in (
        ("ep-ab", "between 6 and 30 characters"),
        ("e" * 31, "between 6 and 30 characters"),
        ("Ep_iris", r"must match the regular expression \[a-z\]"),
        ("ep-iris-", r"must match the regular expression"),
    ):
        with pytest.raises(Exception, match=message) as refused:
            client.create_service_account(
                request={"name": f"projects/{PROJECT}", "account_id": account_id}, retry=None, timeout=5
            )
        assert refused.value.grpc_status_code == grpc.StatusCode.INVALID_ARGUMENT
    client.create_service_account(request={"name": f"projects/{PROJECT}", "account_id": "ep-iris"}, timeout=5)
    with pytest.raises(Exception, match="already exists within project") as twice:
        client.create_service_account(
            request={"name": f"projects/{PROJECT}", "account_id": "ep-iris"}, retry=None, timeout=5
        )
    assert twice.value.grpc_status_code == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(Exception, match="Unknown service account") as missing:
        client.get_service_account(
            request={"name": f"projects/-/serviceAccounts/ep-other@{PROJECT}.iam.gserviceaccount.com"},
            retry=None,
            timeout=5,
        )
    assert missing.value.grpc_status_code == grpc.StatusCode.NOT_FOUND


def test_an_account_id_iam_would_refuse_fails_before_any_call(gcp_settings, fakes, artifact):
    gcp_settings.GCP_SERVICE_ACCOUNT_TEMPLATE = "ep_{endpoint}@{project}.iam.gserviceaccount.com"
    runtime = GcpRuntime(GcpConfig.from_settings())

    with pytest.raises(PermanentError, match="6 to 30 lowercase letters"):
        run_steps(runtime, make_spec(artifact, endpoint="iris"), only=("service_account",))

    assert fakes.iam.methods() == []


ACT_AS_DENIED = (
    f"Permission 'iam.serviceaccounts.actAs' denied on service account {SERVING_SA} (or it may not exist)."
)


@pytest.fixture
def google_time(fakes, clock):
    """The fakes keep Google's time on the runtime's clock: a new account is unseen by Cloud Run
    for a minute, and a bucket grant takes two to hold."""
    fakes.project.clock = clock.time
    fakes.project.act_as_delay = 60.0
    fakes.project.grant_delay = 120.0
    return fakes.project


def steps_and_resources(gcp, artifact):
    spec = make_spec(artifact)
    return {step.name: step for step in gcp.deploy_steps(spec)}, run_steps(
        gcp, spec, only=("service_account", "artifact")
    )


def test_cloud_run_not_seeing_a_new_account_yet_is_waited_for(gcp, fakes, artifact, clock, google_time):
    steps, resources = steps_and_resources(gcp, artifact)
    assert resources["service_account_made_at"] == clock.time()

    for _ in range(4):  # 0, 15, 30 and 45 s after the account was made
        with pytest.raises(Pending, match=f"Cloud Run does not see {SERVING_SA} yet") as waiting:
            steps["revision"].run(resources)
        assert waiting.value.retry_after == PROPAGATION_POLL_SECONDS
        clock.now += waiting.value.retry_after

    assert steps["revision"].run(resources).resources["revision"] == "iris-prod-d1"
    assert fakes.run.methods().count("UpdateService") == 5


def test_past_the_wait_the_deploy_fails_naming_what_is_missing(gcp, fakes, artifact, clock, google_time):
    google_time.act_as_delay = 3600.0  # never, as far as the deploy can tell
    steps, resources = steps_and_resources(gcp, artifact)
    clock.now += gcp.ctx.cfg.propagation_wait

    with pytest.raises(PermanentError, match="the worker needs roles/iam.serviceAccountUser on it"):
        steps["revision"].run(resources)


def test_an_account_the_deploy_did_not_make_is_not_waited_for(gcp, fakes, artifact):
    steps, resources = steps_and_resources(gcp, artifact)
    del resources["service_account_made_at"]
    fakes.run.fail_next(1, grpc.StatusCode.PERMISSION_DENIED, ACT_AS_DENIED, method="UpdateService")

    with pytest.raises(PermanentError, match="actAs"):
        steps["revision"].run(resources)


def test_the_revision_starts_once_its_bucket_grant_holds(gcp, fakes, artifact, clock, google_time):
    google_time.act_as_delay = 0.0
    steps, resources = steps_and_resources(gcp, artifact)
    resources.update(steps["revision"].run(resources).resources)

    # The container retries its model download until the grant holds, two minutes on.
    with pytest.raises(Pending, match="Cloud Run revision iris-prod-d1: still in progress"):
        steps["revision_ready"].run(resources)
    clock.now += 120
    assert steps["revision_ready"].run(resources).message


def test_a_grant_slower_than_the_containers_download_wait_fails_the_revision_with_its_reason(
    gcp, fakes, artifact, clock, google_time
):
    google_time.act_as_delay = 0.0
    google_time.grant_delay = 7 * 60.0  # "can take 7 minutes or more"
    steps, resources = steps_and_resources(gcp, artifact)
    resources.update(steps["revision"].run(resources).resources)
    clock.now += 180

    with pytest.raises(
        PermanentError, match="The model download from gs://portal-artifacts/.* was refused for 180 s"
    ):
        steps["revision_ready"].run(resources)


@pytest.mark.parametrize("endpoint", ["a", "ab", "abc"])
def test_a_short_endpoint_name_deploys_with_an_account_iam_accepts(gcp, fakes, artifact, endpoint):
    account = gcp.cfg.service_account_for(endpoint)
    account_id = account.partition("@")[0]

    run_steps(gcp, make_spec(artifact, endpoint=endpoint))

    assert 6 <= len(account_id) <= 30 and account_id.startswith(f"ep-{endpoint}")
    assert fakes.iam.emails(PROJECT) == [account]
    assert account == gcp.cfg.service_account_for(endpoint)  # the same at every deploy
    service = fakes.run.service(f"projects/{PROJECT}/locations/us-central1/services/{endpoint}")
    assert service.template.service_account == account


def test_two_long_endpoint_names_sharing_a_prefix_get_their_own_accounts(gcp, fakes, artifact):
    first, second = "fraud-scoring-for-the-european-region-a", "fraud-scoring-for-the-european-region-b"

    run_steps(gcp, make_spec(artifact, endpoint=first))
    run_steps(gcp, make_spec(artifact, endpoint=second, deployment_id=2))

    accounts = fakes.iam.emails(PROJECT)
    assert sorted(accounts) == sorted(
        [gcp.cfg.service_account_for(first), gcp.cfg.service_account_for(second)]
    )
    assert len(set(accounts)) == 2
    assert all(len(account.partition("@")[0]) == 30 for account in accounts)
