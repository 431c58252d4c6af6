"""The GCP runtime's first steps (artifact, revision, readiness, invoker IAM) on fake Google servers.

The real google-cloud-run and google-cloud-storage clients talk gRPC and REST to the fakes in
tests/fakes; each test asserts the exact requests Google would have received.
"""

import json

import grpc
import pytest
from google.cloud import run_v2

from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import GATEWAY_SA, PROJECT, make_spec, run_steps
from tests.fakes.grpc_server import quota_error
from worker.runtimes import base
from worker.runtimes.base import PermanentError, TeardownSpec, TransientError
from worker.runtimes.gcp.operations import StillRunning

SERVICE = f"projects/{PROJECT}/locations/us-central1/services/iris-prod"
SERVING_SA = f"ep-iris-prod@{PROJECT}.iam.gserviceaccount.com"
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


def test_a_first_deploy_uploads_the_artifact_deploys_a_revision_and_lets_the_gateway_invoke_it(
    gcp, fakes, artifact, clock
):
    spec = make_spec(artifact, deployment_id=7, cpu="2", memory="1Gi", min_instances=1, max_instances=4)

    resources = run_steps(gcp, spec)

    sha = artifact[1]
    assert fakes.storage.methods() == [
        "GET /storage/v1/b/portal-artifacts",  # the project check: the bucket, and what the worker may do
        "GET /storage/v1/b/portal-artifacts/iam/testPermissions",
        f"GET /storage/v1/b/portal-artifacts/o/{sha}.skops",
        "POST /upload/storage/v1/b/portal-artifacts/o",
        "GET /storage/v1/b/portal-artifacts/iam",
        "PUT /storage/v1/b/portal-artifacts/iam",
    ]
    upload = fakes.storage.requests("POST /upload")[0]
    assert upload.query["uploadType"] == "multipart"
    assert upload.query["ifGenerationMatch"] == "0"
    assert fakes.storage.data[("portal-artifacts", f"{sha}.skops")] == artifact[0].read_bytes()
    assert fakes.storage.policies["portal-artifacts"]["bindings"] == [
        {"role": "roles/storage.objectViewer", "members": [f"serviceAccount:{SERVING_SA}"]}
    ]

    assert fakes.run.methods() == ["UpdateService", "GetOperation", "GetIamPolicy", "SetIamPolicy"]
    request = fakes.run.requests("UpdateService")[0]
    assert request.allow_missing and not request.validate_only
    service = request.service
    assert service.name == SERVICE
    assert service.ingress == run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL
    assert not service.invoker_iam_disabled
    template = service.template
    assert template.revision == "iris-prod-d7"
    assert template.service_account == SERVING_SA
    assert template.scaling.min_instance_count == 1 and template.scaling.max_instance_count == 4
    assert template.timeout.seconds == 60
    assert template.max_instance_request_concurrency == 80
    (container,) = template.containers
    assert container.image == "us-docker.pkg.dev/portal-test/portal/serving:1.0"
    assert dict(container.resources.limits) == {"cpu": "2", "memory": "1Gi"}
    env = {item.name: item.value for item in container.env}
    assert env["SERVING_MODEL_URI"] == f"gs://portal-artifacts/{sha}.skops"
    assert json.loads(env["SERVING_MODEL_META"]) == spec.model.meta()
    assert [(t.type_, t.revision, t.percent) for t in service.traffic] == [(REVISION, "iris-prod-d7", 100)]

    set_policy = fakes.run.requests("SetIamPolicy")[0]
    assert set_policy.resource == SERVICE
    assert set_policy.policy.etag  # the etag read, so a concurrent write is refused, not overwritten
    assert [(b.role, list(b.members)) for b in fakes.run.policy(SERVICE).bindings] == [
        ("roles/run.invoker", [f"serviceAccount:{GATEWAY_SA}"])
    ]
    assert resources["revision"] == "iris-prod-d7"
    assert resources["url"].startswith("https://iris-prod-") and resources["url"].endswith(".a.run.app")
    assert resources["model_uri"] == f"gs://portal-artifacts/{sha}.skops"
    assert clock.sleeps == []


def test_running_every_step_twice_leaves_one_object_one_revision_and_one_binding(gcp, fakes, artifact):
    spec = make_spec(artifact, deployment_id=3)
    resources = {}
    for step in gcp.deploy_steps(spec):
        resources.update(step.run(resources).resources)
        resources.update(step.run(resources).resources)

    assert fakes.storage.methods().count("POST /upload/storage/v1/b/portal-artifacts/o") == 1
    assert fakes.storage.methods().count("PUT /storage/v1/b/portal-artifacts/iam") == 1
    assert fakes.run.revision_ids(SERVICE) == ["iris-prod-d3"]
    assert fakes.run.methods().count("SetIamPolicy") == 1
    (binding,) = fakes.run.policy(SERVICE).bindings
    assert list(binding.members) == [f"serviceAccount:{GATEWAY_SA}"]


def test_a_second_deployment_is_a_new_revision_of_the_same_service(gcp, fakes, artifact):
    first = run_steps(gcp, make_spec(artifact, deployment_id=1))
    fakes.clear_calls()

    run_steps(gcp, make_spec(artifact, deployment_id=2, previous=first))

    assert fakes.run.revision_ids(SERVICE) == ["iris-prod-d1", "iris-prod-d2"]
    # The grants the live deployment made are not read again.
    assert fakes.storage.methods() == [f"GET /storage/v1/b/portal-artifacts/o/{artifact[1]}.skops"]
    assert fakes.run.methods() == ["UpdateService", "GetOperation"]
    traffic = fakes.run.service(SERVICE).traffic_statuses
    assert [(t.revision, t.percent) for t in traffic] == [("iris-prod-d2", 100)]


def test_a_canary_gets_its_share_and_the_previous_revision_keeps_the_rest(gcp, fakes, artifact):
    first = run_steps(gcp, make_spec(artifact, deployment_id=1))

    run_steps(gcp, make_spec(artifact, deployment_id=2, traffic=10, previous=first))

    sent = fakes.run.requests("UpdateService")[-1].service.traffic
    assert [(t.type_, t.revision, t.percent) for t in sent] == [
        (REVISION, "iris-prod-d2", 10),
        (REVISION, "iris-prod-d1", 90),
    ]
    status = fakes.run.service(SERVICE).traffic_statuses
    assert [(t.revision, t.percent) for t in status] == [("iris-prod-d2", 10), ("iris-prod-d1", 90)]


def test_a_revision_that_never_gets_ready_fails_with_cloud_runs_message_and_the_old_one_keeps_serving(
    gcp, fakes, artifact
):
    first = run_steps(gcp, make_spec(artifact, deployment_id=1))
    fakes.run.fail_revision("iris-prod-d2", "Container called exit(1).")

    with pytest.raises(PermanentError) as failure:
        run_steps(gcp, make_spec(artifact, deployment_id=2, previous=first))

    assert "Revision 'iris-prod-d2' is not ready and cannot serve traffic. Container called exit(1)." in str(
        failure.value
    )
    service = fakes.run.service(SERVICE)
    assert service.latest_ready_revision.endswith("/iris-prod-d1")
    assert [(t.revision, t.percent) for t in service.traffic_statuses] == [("iris-prod-d1", 100)]


def test_waiting_for_a_slow_revision_gives_the_worker_back_and_resumes_by_polling(
    gcp, fakes, artifact, clock
):
    fakes.run.operation_polls = 8  # done on the 8th poll
    spec = make_spec(artifact, deployment_id=4)
    steps = {step.name: step for step in gcp.deploy_steps(spec)}
    resources = dict(steps["revision"].run({}).resources)

    with pytest.raises(StillRunning) as pending:
        steps["revision_ready"].run(resources)
    # 10 s in the worker at most (GCP_OPERATION_WAIT_SECONDS), polling every 2 s, then hand back.
    assert clock.sleeps == [2.0] * 5
    assert pending.value.retry_after == 2.0
    assert fakes.run.methods() == ["UpdateService"] + ["GetOperation"] * 6

    result = steps["revision_ready"].run(resources)  # the task's retry

    assert result.resources["url"].endswith(".a.run.app")
    assert fakes.run.methods().count("UpdateService") == 1
    assert fakes.run.methods().count("GetOperation") == 8


def test_an_operation_past_its_deadline_fails_the_step(gcp, fakes, artifact, clock):
    fakes.run.operation_polls = 10_000
    steps = {step.name: step for step in gcp.deploy_steps(make_spec(artifact))}
    resources = dict(steps["revision"].run({}).resources)
    clock.now += 1801

    with pytest.raises(PermanentError, match="still not done after 1801 s"):
        steps["revision_ready"].run(resources)


def test_unavailable_is_retried_with_backoff_and_jitter_then_succeeds(gcp, fakes, artifact, clock):
    fakes.run.fail_next(2, grpc.StatusCode.UNAVAILABLE, method="UpdateService")

    run_steps(gcp, make_spec(artifact), only=("revision",))

    assert fakes.run.methods() == ["UpdateService"] * 3
    first, second = clock.sleeps
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 2.0
    assert fakes.run.revision_ids(SERVICE) == ["iris-prod-d1"]


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN]
)
def test_errors_that_can_pass_become_transient_after_the_last_try(gcp, fakes, artifact, code):
    fakes.run.fail_next(3, code, "backend hiccup", method="UpdateService")

    with pytest.raises(TransientError, match="backend hiccup"):
        run_steps(gcp, make_spec(artifact), only=("revision",))

    assert fakes.run.methods() == ["UpdateService"] * 3


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND],
)
def test_errors_that_cannot_pass_fail_the_step_at_once_with_googles_message(
    gcp, fakes, artifact, clock, code
):
    fakes.run.fail_next(
        1, code, "Permission 'run.services.update' denied on resource", method="UpdateService"
    )

    with pytest.raises(PermanentError) as failure:
        run_steps(gcp, make_spec(artifact), only=("revision",))

    assert "Permission 'run.services.update' denied on resource" in str(failure.value)
    assert code.name in str(failure.value)
    assert fakes.run.methods() == ["UpdateService"]
    assert clock.sleeps == []


def test_a_rate_limit_hands_the_worker_back_for_at_least_thirty_seconds(gcp, fakes, artifact, clock):
    fakes.run.fail_next(method="UpdateService", error=quota_error("WriteRequestsPerMinutePerProject"))

    with pytest.raises(TransientError) as limited:
        run_steps(gcp, make_spec(artifact), only=("revision",))

    assert limited.value.retry_after >= 30
    assert clock.sleeps == []
    assert fakes.run.methods() == ["UpdateService"]


def test_a_daily_quota_fails_the_step(gcp, fakes, artifact):
    fakes.run.fail_next(method="UpdateService", error=quota_error("WriteRequestsPerDayPerProject"))

    with pytest.raises(PermanentError, match="daily quota"):
        run_steps(gcp, make_spec(artifact), only=("revision",))


def test_a_stale_iam_etag_is_read_again_and_the_grant_lands_beside_the_other_writers_binding(
    gcp, fakes, artifact
):
    resources = run_steps(gcp, make_spec(artifact), only=("revision", "revision_ready"))
    fakes.clear_calls()

    def someone_else_writes(request, policy):  # between our first read and our write
        if fakes.run.methods().count("GetIamPolicy") == 1:
            other = type(policy)()
            other.CopyFrom(policy)
            other.bindings.add(role="roles/run.developer", members=["user:ops@example.com"])
            other.etag = b"\x00someone-else"
            fakes.run.policies[request.resource] = other

    fakes.run.after("GetIamPolicy", someone_else_writes)
    run_steps(gcp, make_spec(artifact), resources, only=("invoker",))

    assert fakes.run.methods() == ["GetIamPolicy", "SetIamPolicy", "GetIamPolicy", "SetIamPolicy"]
    bindings = {b.role: list(b.members) for b in fakes.run.policy(SERVICE).bindings}
    assert bindings == {
        "roles/run.developer": ["user:ops@example.com"],
        "roles/run.invoker": [f"serviceAccount:{GATEWAY_SA}"],
    }


def test_an_allowlist_endpoint_takes_traffic_only_from_its_load_balancer(gcp, fakes, artifact):
    spec = make_spec(artifact, mode="ip_allowlist", cidrs=("203.0.113.0/24",))

    names = [step.name for step in gcp.deploy_steps(spec)]
    run_steps(gcp, spec, only=("revision",))

    assert "invoker" not in names
    service = fakes.run.requests("UpdateService")[0].service
    assert service.ingress == run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER
    assert service.invoker_iam_disabled


def test_an_uploaded_artifact_is_not_uploaded_again_even_when_another_worker_won_the_race(
    gcp, fakes, artifact
):
    fakes.storage.fail_next(
        1, 412, "At least one of the pre-conditions you specified did not hold.", route="POST"
    )

    run_steps(gcp, make_spec(artifact), only=("artifact",))

    assert fakes.storage.methods().count("POST /upload/storage/v1/b/portal-artifacts/o") == 1


def test_a_dropped_connection_to_storage_is_retried(gcp, fakes, artifact, clock):
    fakes.storage.fail_next(1, 0, route="GET /storage/v1/b/portal-artifacts/o/")

    run_steps(gcp, make_spec(artifact), only=("artifact",))

    assert len(clock.sleeps) == 1
    assert fakes.storage.methods()[:2] == [f"GET /storage/v1/b/portal-artifacts/o/{artifact[1]}.skops"] * 2


def test_an_object_of_the_wrong_size_under_the_artifacts_name_fails_the_step(gcp, fakes, artifact):
    fakes.storage.put("portal-artifacts", f"{artifact[1]}.skops", b"truncated")

    with pytest.raises(PermanentError, match="holds 9 bytes"):
        run_steps(gcp, make_spec(artifact), only=("artifact",))


def test_the_fake_refuses_what_cloud_run_refuses(gcp, fakes, artifact):
    client = gcp.ctx.clients.run()
    long_id = "a" * 50
    with pytest.raises(Exception, match="fewer than 50 characters"):
        client.create_service(
            parent=f"projects/{PROJECT}/locations/us-central1", service=run_v2.Service(), service_id=long_id
        )
    spec = make_spec(artifact, cpu="0.5", concurrency=80)
    with pytest.raises(PermanentError, match="Total cpu < 1 is not supported with concurrency > 1"):
        run_steps(gcp, spec, only=("revision",))


def test_a_revision_name_reused_with_another_template_is_refused(gcp, fakes, artifact):
    run_steps(gcp, make_spec(artifact, deployment_id=5), only=("revision",))

    with pytest.raises(PermanentError, match="with different configuration already exists"):
        run_steps(gcp, make_spec(artifact, deployment_id=5, memory="2Gi"), only=("revision",))


def test_an_endpoint_name_cloud_run_cannot_take_fails_before_any_call(gcp, fakes, artifact):
    with pytest.raises(PermanentError, match="fewer than 50"):
        run_steps(gcp, make_spec(artifact, endpoint="x" * 50), only=("revision",))
    assert fakes.run.methods() == []


def delete_service(gcp, spec: TeardownSpec) -> None:
    """Run only the delete steps of the endpoint's Cloud Run service (someone deleted it)."""
    base.run_steps([s for s in gcp.delete_steps(spec) if s.name in ("delete_service", "service_deleted")])


def test_deleting_the_service_addresses_it_by_its_exact_name_and_leaves_a_namesake_in_another_region(
    gcp, fakes, artifact
):
    run_steps(gcp, make_spec(artifact))
    foreign = f"projects/{PROJECT}/locations/europe-west1/services/iris-prod"
    fakes.run.services[foreign] = run_v2.Service(name=foreign, labels={"team": "ops"})
    fakes.clear_calls()

    delete_service(gcp, TeardownSpec(endpoint="iris-prod"))

    assert fakes.run.methods() == ["GetService", "DeleteService", "GetOperation"]
    assert fakes.run.requests("GetService")[0].name == SERVICE
    assert fakes.run.requests("DeleteService")[0].name == SERVICE
    assert list(fakes.run.services) == [foreign]


def test_listing_services_in_every_region_is_refused_as_cloud_run_refuses_it(gcp, fakes):
    with pytest.raises(Exception, match='cannot be the "-" wildcard'):
        gcp.ctx.clients.run().list_services(parent=f"projects/{PROJECT}/locations/-")


def test_a_service_made_again_after_it_was_deleted_gets_its_invoker_grant_again(gcp, fakes, artifact):
    first = run_steps(gcp, make_spec(artifact, deployment_id=1))
    delete_service(gcp, TeardownSpec(endpoint="iris-prod", made=(first,)))
    fakes.clear_calls()

    run_steps(gcp, make_spec(artifact, deployment_id=2, previous=first))

    assert fakes.run.methods() == ["UpdateService", "GetOperation", "GetIamPolicy", "SetIamPolicy"]
    (binding,) = fakes.run.policy(SERVICE).bindings
    assert list(binding.members) == [f"serviceAccount:{GATEWAY_SA}"]


@pytest.mark.parametrize("mode", ["api_key", "both", "ip_allowlist"])
def test_a_step_retried_while_google_works_waits_for_its_operation_instead_of_starting_another(
    gcp, fakes, artifact, clock, mode
):
    import dataclasses

    from worker.runtimes.gcp.runtime import GcpRuntime

    for fake in fakes.all():
        fake.operation_polls = 4
    handing_back = GcpRuntime(  # never sleeps in the worker: every unfinished poll hands the slot back
        dataclasses.replace(gcp.cfg, wait_seconds=0),
        sleep=clock.sleep,
        clock=clock.monotonic,
        wall=clock.time,
    )
    resources, tries = {}, {}
    for step in handing_back.deploy_steps(make_spec(artifact, mode=mode, cidrs=("198.51.100.0/24",))):
        tries[step.name] = 1
        while True:
            try:
                resources.update(step.run(resources).resources)
                break
            except StillRunning:
                tries[step.name] += 1
                assert tries[step.name] <= 10, f"{step.name} starts its work again on every try"

    assert clock.sleeps == []
    assert resources["url"]
    assert fakes.run.revision_ids(SERVICE) == ["iris-prod-d1"]


@pytest.mark.parametrize(
    ("cpu", "memory", "allowed"),
    [
        ("1", "4Gi", "128Mi and 4Gi"),
        ("2", "8Gi", "128Mi and 8Gi"),
        ("4", "16Gi", "2Gi and 16Gi"),
        ("6", "24Gi", "4Gi and 24Gi"),
        ("8", "32Gi", "4Gi and 32Gi"),
        ("0.5", "1Gi", "128Mi and 1Gi"),
    ],
)
def test_memory_past_what_the_cpu_allows_is_refused_as_cloud_run_refuses_it(
    gcp, fakes, artifact, cpu, memory, allowed
):
    larger = f"{int(memory[:-2]) * 2}Gi"
    concurrency = 1 if float(cpu) < 1 else 80  # Cloud Run wants 1 under 1 vCPU
    with pytest.raises(PermanentError, match=f"memory must be between {allowed} inclusive") as refused:
        run_steps(
            gcp, make_spec(artifact, cpu=cpu, memory=larger, concurrency=concurrency), only=("revision",)
        )
    assert "Invalid value specified for memory" in str(refused.value)
    assert "INVALID_ARGUMENT" in str(refused.value)

    spec = make_spec(artifact, cpu=cpu, memory=memory, concurrency=concurrency)
    made = run_steps(gcp, spec, only=("revision", "revision_ready"))
    limits = fakes.run.service(made["service"]).template.containers[0].resources.limits
    assert (limits["cpu"], limits["memory"]) == (cpu, memory)


def test_too_little_memory_for_many_cpus_is_refused(gcp, fakes, artifact):
    with pytest.raises(PermanentError, match="For 4.0 CPU, memory must be between 2Gi and 16Gi"):
        run_steps(gcp, make_spec(artifact, cpu="4", memory="1Gi"), only=("revision",))


SLIM_IMAGE = "us-docker.pkg.dev/portal-test/portal/serving-onnx:1.0"
FULL_IMAGE = "us-docker.pkg.dev/portal-test/portal/serving:1.0"


@pytest.mark.parametrize(
    ("slim_image", "fmt", "image"),
    [
        (SLIM_IMAGE, "onnx", SLIM_IMAGE),
        (SLIM_IMAGE, "skops", FULL_IMAGE),
        ("", "onnx", FULL_IMAGE),
        ("", "skops", FULL_IMAGE),
    ],
)
def test_an_onnx_form_runs_in_the_onnx_serving_image_when_there_is_one(
    gcp_settings, fakes, artifact, clock, slim_image, fmt, image
):
    from dataclasses import replace

    from worker.runtimes.gcp.config import GcpConfig
    from worker.runtimes.gcp.runtime import GcpRuntime

    gcp_settings.GCP_SERVING_IMAGE_ONNX = slim_image
    runtime = GcpRuntime(GcpConfig.from_settings(), sleep=clock.sleep, clock=clock.monotonic, wall=clock.time)
    spec = make_spec(artifact)
    spec = replace(spec, model=replace(spec.model, format=fmt))

    run_steps(runtime, spec)

    (container,) = fakes.run.requests("UpdateService")[0].service.template.containers
    assert container.image == image
    env = {item.name: item.value for item in container.env}
    assert env["SERVING_MODEL_URI"] == f"gs://portal-artifacts/{artifact[1]}.{fmt}"
