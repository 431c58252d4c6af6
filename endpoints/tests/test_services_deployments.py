"""The deployment services: queueing, claiming, journaling, finishing and failing."""

from pathlib import Path

import pytest

from endpoints.models import Deployment, DeploymentStatus, Endpoint
from endpoints.services import ServiceError
from endpoints.services.deployments import deployment_request
from endpoints.services.operations import deployment_claim, deployment_run
from worker.runtimes.base import PermanentError, TransientError


def test_a_second_deploy_while_one_is_queued_is_refused(admin, endpoint, iris_version):
    deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    with pytest.raises(ServiceError, match="already has a deployment in progress"):
        deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    assert Deployment.objects.filter(status=DeploymentStatus.QUEUED).count() == 1


def test_a_team_member_cannot_request_a_deploy(member, endpoint, iris_version):
    with pytest.raises(ServiceError, match="Only an admin"):
        deployment_request(user=member, endpoint=endpoint, model_version=iris_version)
    assert not Deployment.objects.exists()


def test_a_deployment_is_claimed_once(admin, endpoint, iris_version):
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    assert deployment_claim(deployment_id=deployment.pk)
    assert not deployment_claim(deployment_id=deployment.pk)


def steps_run(runtime) -> list[str]:
    return [call[0] for call in runtime.calls]


def test_running_a_deployment_journals_every_step_and_makes_it_live(
    admin, endpoint, iris_version, memory_runtime
):
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    assert deployment_run(deployment_id=deployment.pk) == DeploymentStatus.READY
    deployment.refresh_from_db()
    endpoint.refresh_from_db()
    assert [step["step"] for step in deployment.steps] == ["artifact", "revision", "switch"]
    assert {step["state"] for step in deployment.steps} == {"done"}
    revision = f"iris-prod-d{deployment.pk}"
    assert deployment.resources == {"revision": revision, "url": "http://iris-prod.memory.invalid"}
    assert endpoint.live_deployment == deployment and endpoint.url == "http://iris-prod.memory.invalid"
    assert memory_runtime.calls == [("artifact", revision), ("revision", revision), ("switch", revision)]


def test_a_second_delivery_of_a_finished_deployment_does_nothing(
    admin, endpoint, iris_version, memory_runtime
):
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deployment_run(deployment_id=deployment.pk)
    assert deployment_run(deployment_id=deployment.pk) == DeploymentStatus.READY
    assert steps_run(memory_runtime) == ["artifact", "revision", "switch"]


def test_a_permanent_error_fails_the_deployment_and_keeps_the_live_one(
    admin, endpoint, iris_version, memory_runtime
):
    first = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deployment_run(deployment_id=first.pk)
    memory_runtime.fail("revision", PermanentError("the revision never became ready"))
    second = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    assert deployment_run(deployment_id=second.pk) == DeploymentStatus.FAILED
    second.refresh_from_db()
    endpoint.refresh_from_db()
    assert second.error == "Start the revision: the revision never became ready"
    assert [step["state"] for step in second.steps] == ["done", "failed"]
    assert endpoint.live_deployment == first
    assert memory_runtime.endpoints["iris-prod"].traffic == {f"iris-prod-d{first.pk}": 100}


def test_a_transient_error_is_retried_from_the_step_that_failed(
    admin, endpoint, iris_version, memory_runtime
):
    memory_runtime.fail("revision", TransientError("busy"))
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    with pytest.raises(TransientError):
        deployment_run(deployment_id=deployment.pk)
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.RUNNING
    assert [step["state"] for step in deployment.steps] == ["done", "retrying"]
    assert deployment_run(deployment_id=deployment.pk) == DeploymentStatus.READY
    assert steps_run(memory_runtime) == ["artifact", "revision", "revision", "switch"]


def test_a_redeploy_supersedes_the_live_deployment(admin, endpoint, iris_version, memory_runtime):
    first = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deployment_run(deployment_id=first.pk)
    second = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deployment_run(deployment_id=second.pk)
    first.refresh_from_db()
    assert first.status == DeploymentStatus.SUPERSEDED


def test_a_canary_leaves_the_previous_version_serving_until_a_full_deploy(
    admin, endpoint, iris_version, memory_runtime
):
    stable = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deployment_run(deployment_id=stable.pk)
    canary = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version, traffic_percent=10)
    deployment_run(deployment_id=canary.pk)
    stable.refresh_from_db()
    endpoint.refresh_from_db()
    assert stable.status == DeploymentStatus.READY
    assert endpoint.live_deployment == canary
    full = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deployment_run(deployment_id=full.pk)
    assert set(Deployment.objects.exclude(pk=full.pk).values_list("status", flat=True)) == {
        DeploymentStatus.SUPERSEDED
    }


def test_a_rollback_tells_the_runtime_what_the_earlier_deployment_made(
    admin, endpoint, iris_version, memory_runtime
):
    from endpoints.services.deployments import deployment_rollback

    first = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deployment_run(deployment_id=first.pk)
    second = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deployment_run(deployment_id=second.pk)
    first.refresh_from_db()
    back = deployment_rollback(user=admin, deployment=first)
    deployment_run(deployment_id=back.pk)
    assert memory_runtime.calls[-1] == ("switch", first.resources["revision"])
    assert memory_runtime.endpoints["iris-prod"].traffic == {first.resources["revision"]: 100}
    second.refresh_from_db()
    assert second.status == DeploymentStatus.ROLLED_BACK


def test_revival_leaves_an_endpoint_with_a_deploy_in_progress_and_revives_what_is_live_now(
    admin, endpoint, iris_version, memory_runtime
):
    from endpoints.services.deployments import endpoints_revive

    first = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deployment_run(deployment_id=first.pk)
    memory_runtime.crash("iris-prod")  # the machine restarted
    second = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)

    assert endpoints_revive() == []  # the deploy in progress brings the endpoint back itself
    assert ("ensure_serving", "iris-prod") not in memory_runtime.calls

    deployment_run(deployment_id=second.pk)
    memory_runtime.crash("iris-prod")
    assert endpoints_revive() == ["iris-prod"]
    assert memory_runtime.endpoints["iris-prod"].traffic == {f"iris-prod-d{second.pk}": 100}


@pytest.mark.django_db(transaction=True)
def test_a_step_longer_than_the_claim_keeps_it_and_a_second_worker_stays_out(
    admin, endpoint, iris_version, memory_runtime, settings
):
    import threading

    from django.db import connections

    settings.DEPLOY_CLAIM_SECONDS = 1
    memory_runtime.slow("revision", 2.5)
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    outcome = {}

    def run_in_a_worker():
        try:
            outcome["first"] = deployment_run(deployment_id=deployment.pk)
        finally:
            connections.close_all()

    worker = threading.Thread(target=run_in_a_worker)
    worker.start()
    while not memory_runtime.runs["revision"]:
        worker.join(0.05)
    worker.join(1.5)  # past the claim's second: only a renewed claim still holds it

    assert deployment_claim(deployment_id=deployment.pk) is False
    worker.join()
    assert outcome["first"] == DeploymentStatus.READY
    assert memory_runtime.runs["revision"] == 1


def test_a_rollback_to_a_deployment_whose_api_config_was_deleted_is_refused(
    admin, endpoint, iris_version, memory_runtime, django_assert_num_queries
):
    from endpoints.services.deployments import deployment_rollback

    runs = []
    for _ in range(3):
        deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
        deployment_run(deployment_id=deployment.pk)
        runs.append(deployment)
    old, recent, live = (Deployment.objects.get(pk=run.pk) for run in runs)
    for deployment in (old, recent):
        deployment.resources = {
            **deployment.resources,
            "api_config": f"apis/iris-prod/configs/d{deployment.pk}",
        }
        deployment.save(update_fields=["resources"])
    live.resources = {**live.resources, "pruned_configs": [old.resources["api_config"]]}
    live.save(update_fields=["resources"])

    assert "API config was deleted" in old.roll_back_refusal
    history = list(Endpoint.objects.get(pk=endpoint.pk).deployments.all())
    with django_assert_num_queries(1):  # the history page asks every row: one read of what was pruned
        refusals = [row.roll_back_refusal for row in history]
    assert sum("API config was deleted" in refusal for refusal in refusals) == 1
    with pytest.raises(ServiceError, match="deploy its version again instead"):
        deployment_rollback(user=admin, deployment=old)
    assert recent.roll_back_refusal == ""
    deployment_rollback(user=admin, deployment=recent)


def test_an_onnx_form_is_deployed_with_the_linear_weights_read_from_it(iris_version, tmp_path):
    """So the serving-onnx image, which has no `onnx` package, still answers one row with the kernel."""
    from endpoints.services.deployments import model_spec_for

    meta = model_spec_for(iris_version).meta()
    assert meta["format"] == "onnx" and meta["linear_kernel"]["link"] == "softmax"
    assert len(meta["linear_kernel"]["weights"]) == 3 and len(meta["linear_kernel"]["weights"][0]) == 4

    from endpoints.services.deployments import _linear_kernel

    damaged = tmp_path / "damaged.onnx"
    data = bytearray(Path(iris_version.onnx_artifact.path).read_bytes())
    data[10:18] = b"damaged!"
    damaged.write_bytes(bytes(data))
    assert _linear_kernel(str(damaged)) is None  # no proposal: the deploy fails on the checksum
