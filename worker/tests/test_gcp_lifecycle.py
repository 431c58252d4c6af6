"""Stopping, starting and deleting a GCP endpoint, on the fake Google servers.

Each test asserts what the fakes hold afterwards (services, scaling, gateways, keys, load balancer
pieces, accounts, objects, bucket grants), not only which calls were made.
"""

import dataclasses

import pytest
from google.api_core import exceptions as gexc
from google.cloud import compute_v1, run_v2

from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import PROJECT, make_spec, run_steps
from worker.runtimes import base
from worker.runtimes.base import KeySpec, TeardownSpec
from worker.runtimes.gcp.operations import StillRunning
from worker.runtimes.gcp.runtime import GcpRuntime

SERVICE = f"projects/{PROJECT}/locations/us-central1/services/iris-prod"
SERVING_SA = f"ep-iris-prod@{PROJECT}.iam.gserviceaccount.com"
MODES = ["api_key", "ip_allowlist", "open"]
CIDRS = ("198.51.100.0/24",)
MANUAL = run_v2.ServiceScaling.ScalingMode.MANUAL
AUTOMATIC = run_v2.ServiceScaling.ScalingMode.AUTOMATIC


def deploy(gcp, artifact, mode: str, **kwargs) -> tuple[dict, tuple[str, ...]]:
    """A full deploy of iris-prod in `mode`, with one key in the key modes; its resources and keys."""
    spec = make_spec(artifact, mode=mode, cidrs=CIDRS if mode != "open" else (), **kwargs)
    resources = run_steps(gcp, spec)
    if mode != "api_key":
        return resources, ()
    issued = gcp.issue_key(KeySpec(endpoint="iris-prod", key_id="r1", display_name="Team (request 1)"))
    return resources, (issued.name,)


def teardown(artifact, made: tuple = (), key_names: tuple = ()) -> TeardownSpec:
    model = make_spec(artifact).model
    return TeardownSpec(endpoint="iris-prod", made=made, key_names=key_names, artifacts=(model,))


def leftovers(fakes) -> dict[str, list]:
    return fakes.held()


def fresh(gcp, clock, **changes) -> GcpRuntime:
    """Another worker's runtime on the same fakes (and the same clock)."""
    config = dataclasses.replace(gcp.cfg, **changes)
    return GcpRuntime(config, sleep=clock.sleep, clock=clock.monotonic, wall=clock.time)


def drive(steps, resources: dict) -> dict:
    """Run steps like the portal's task: a step still waiting on Google is run again."""
    for step in steps:
        for _ in range(20):
            try:
                resources.update(step.run(resources).resources)
                break
            except StillRunning:
                continue
        else:
            raise AssertionError(f"{step.name} never finished")
    return resources


# --- stop and start ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_stopping_scales_the_service_to_no_instance_and_keeps_everything_else(gcp, fakes, artifact, mode):
    spec = make_spec(artifact, mode=mode, cidrs=CIDRS if mode != "open" else (), min_instances=1)
    deploy(gcp, artifact, mode, min_instances=1)
    before = leftovers(fakes)
    uri = fakes.run.service(SERVICE).uri

    base.run_steps(gcp.stop_steps(spec))

    service = fakes.run.service(SERVICE)
    assert (service.scaling.scaling_mode, service.scaling.manual_instance_count) == (MANUAL, 0)
    assert [(t.revision, t.percent) for t in service.traffic_statuses] == [("iris-prod-d1", 100)]
    assert service.uri == uri
    assert leftovers(fakes) == before  # no revision made, nothing deleted: gateway, LB, Armor, keys stay


@pytest.mark.parametrize("mode", MODES)
def test_starting_puts_the_service_back_on_automatic_scaling_with_its_min_instances(
    gcp, fakes, artifact, mode
):
    spec = make_spec(artifact, mode=mode, cidrs=CIDRS if mode != "open" else (), min_instances=1)
    deploy(gcp, artifact, mode, min_instances=1)
    base.run_steps(gcp.stop_steps(spec))
    fakes.clear_calls()

    base.run_steps(gcp.start_steps(spec))

    assert fakes.run.methods() == ["GetService", "UpdateService", "GetOperation"]
    service = fakes.run.service(SERVICE)
    assert service.scaling.scaling_mode == AUTOMATIC
    assert service.template.scaling.min_instance_count == 1
    assert [(t.revision, t.percent) for t in service.traffic_statuses] == [("iris-prod-d1", 100)]
    assert fakes.run.revision_ids(SERVICE) == ["iris-prod-d1"]


def test_stopping_and_starting_twice_is_harmless(gcp, fakes, artifact):
    spec = make_spec(artifact)
    deploy(gcp, artifact, "api_key")

    base.run_steps(gcp.stop_steps(spec) + gcp.stop_steps(spec))
    assert fakes.run.service(SERVICE).scaling.scaling_mode == MANUAL
    base.run_steps(gcp.start_steps(spec) + gcp.start_steps(spec))
    assert fakes.run.service(SERVICE).scaling.scaling_mode == AUTOMATIC


def test_a_stop_waits_for_its_operation_and_a_fresh_worker_resumes_by_polling(gcp, fakes, artifact, clock):
    spec = make_spec(artifact)
    deploy(gcp, artifact, "api_key")
    fakes.run.operation_polls = 3
    first, second = fresh(gcp, clock, wait_seconds=0), fresh(gcp, clock, wait_seconds=0)

    resources = first.stop_steps(spec)[0].run({}).resources
    drive(second.stop_steps(spec)[1:], dict(resources))

    assert fakes.run.methods().count("UpdateService") == 2  # the deploy's and the stop's
    assert fakes.run.service(SERVICE).scaling.manual_instance_count == 0


def test_the_plan_of_a_stop_says_what_changes_and_nothing_once_stopped(gcp, fakes, artifact):
    spec = make_spec(artifact)
    deploy(gcp, artifact, "api_key")

    assert [(c.step, c.action) for c in base.plan_of(gcp.stop_steps(spec))] == [("stop_service", "update")]
    assert fakes.run.service(SERVICE).scaling.scaling_mode != MANUAL  # the plan changed nothing
    base.run_steps(gcp.stop_steps(spec))
    assert [(c.step, c.action) for c in base.plan_of(gcp.stop_steps(spec))] == [("stop_service", "none")]
    assert [(c.step, c.action) for c in base.plan_of(gcp.start_steps(spec))] == [("start_service", "update")]


def test_a_deploy_after_a_stop_serves(gcp, fakes, artifact):
    first, _ = deploy(gcp, artifact, "api_key")
    base.run_steps(gcp.stop_steps(make_spec(artifact)))

    run_steps(gcp, make_spec(artifact, deployment_id=2, previous=first))

    service = fakes.run.service(SERVICE)
    assert service.scaling.scaling_mode == AUTOMATIC
    assert [(t.revision, t.percent) for t in service.traffic_statuses] == [("iris-prod-d2", 100)]


def test_a_rollback_after_a_stop_serves(gcp, fakes, artifact):
    first, _ = deploy(gcp, artifact, "api_key")
    second = run_steps(gcp, make_spec(artifact, deployment_id=2, previous=first))
    base.run_steps(gcp.stop_steps(make_spec(artifact, deployment_id=2)))

    back = dataclasses.replace(make_spec(artifact, deployment_id=3, previous=second), rollback_to=first)
    run_steps(gcp, back)

    service = fakes.run.service(SERVICE)
    assert service.scaling.scaling_mode == AUTOMATIC
    assert [(t.revision, t.percent) for t in service.traffic_statuses] == [("iris-prod-d1", 100)]


# --- delete ------------------------------------------------------------------------------------

EXPECTED = {
    "api_key": {
        "services",
        "revisions",
        "apis",
        "configs",
        "gateways",
        "keys",
        "accounts",
        "objects",
        "readers",
    },
    "ip_allowlist": {"services", "revisions", "compute", "policies", "accounts", "objects", "readers"},
    "open": {"services", "revisions", "accounts", "objects", "readers"},
}


@pytest.mark.parametrize("mode", MODES)
def test_deleting_after_a_full_deploy_leaves_nothing(gcp, fakes, artifact, mode):
    made, key_names = deploy(gcp, artifact, mode)
    assert set(leftovers(fakes)) == EXPECTED[mode]

    base.run_steps(gcp.delete_steps(teardown(artifact, (made,), key_names)))

    assert leftovers(fakes) == {}


def test_deleting_a_stopped_endpoint_with_two_deployments_leaves_nothing(gcp, fakes, artifact):
    first, key_names = deploy(gcp, artifact, "api_key")
    second = run_steps(gcp, make_spec(artifact, deployment_id=2, previous=first))
    base.run_steps(gcp.stop_steps(make_spec(artifact, deployment_id=2)))
    assert len(fakes.gateway.configs) == 2

    base.run_steps(gcp.delete_steps(teardown(artifact, (first, second), key_names)))

    assert leftovers(fakes) == {}


@pytest.mark.parametrize("mode", MODES)
def test_a_delete_resumed_by_another_worker_after_any_step_ends_the_same(gcp, fakes, artifact, clock, mode):
    boundaries = range(len(gcp.delete_steps(teardown(artifact))) + 1)
    for boundary in boundaries:
        fakes.reset()
        made, key_names = deploy(gcp, artifact, mode)
        spec = teardown(artifact, (made,), key_names)
        for fake in fakes.all():
            fake.operation_polls = 3  # every operation is still running when its step first asks
        first, second = fresh(gcp, clock, wait_seconds=0), fresh(gcp, clock, wait_seconds=0)

        resources = drive(first.delete_steps(spec)[:boundary], {})
        drive(second.delete_steps(spec)[boundary:], resources)

        assert leftovers(fakes) == {}, f"after a stop at step {boundary}"
        for fake, method in [
            (fakes.gateway, "DeleteGateway"),
            (fakes.gateway, "DeleteApi"),
            (fakes.run, "DeleteService"),
            (fakes.keys, "DeleteKey"),
        ]:
            assert fake.methods().count(method) <= 1, f"{method} sent again after a stop at step {boundary}"


def test_deleting_twice_ends_the_same_and_the_second_time_deletes_nothing(gcp, fakes, artifact):
    made, key_names = deploy(gcp, artifact, "api_key")
    spec = teardown(artifact, (made,), key_names)
    base.run_steps(gcp.delete_steps(spec))
    fakes.clear_calls()

    messages = [step.run({}).message for step in gcp.delete_steps(spec)]

    assert leftovers(fakes) == {}
    grpc_deletes = [m for fake in (fakes.run, fakes.gateway, fakes.keys, fakes.iam) for m in fake.methods()]
    assert not [m for m in grpc_deletes if m.startswith("Delete")]
    assert not [m for m in fakes.storage.methods() if m.startswith("DELETE")]
    assert "No gateway was left" in messages and "No artifact was left" in messages


def test_deleting_an_endpoint_that_never_deployed_finds_everything_gone(gcp, fakes, artifact):
    spec = teardown(artifact, key_names=(f"projects/{PROJECT}/locations/global/keys/iris-prod-r9",))

    assert {change.action for change in base.plan_of(gcp.delete_steps(spec))} == {"none"}
    base.run_steps(gcp.delete_steps(spec))

    assert leftovers(fakes) == {}
    assert not [m for m in fakes.gateway.methods() + fakes.run.methods() if m.startswith("Delete")]


def test_a_service_account_the_portal_did_not_make_is_never_deleted(gcp, fakes, artifact):
    fakes.iam.add(SERVING_SA)  # made by an administrator before the first deploy
    made, key_names = deploy(gcp, artifact, "api_key")
    assert made["service_account_created"] is False

    base.run_steps(gcp.delete_steps(teardown(artifact, (made,), key_names)))

    assert leftovers(fakes) == {"accounts": [SERVING_SA], "readers": [f"serviceAccount:{SERVING_SA}"]}
    assert "DeleteServiceAccount" not in fakes.iam.methods()


def test_a_shared_service_account_is_never_deleted(gcp, fakes, artifact, clock):
    shared = f"models-runner@{PROJECT}.iam.gserviceaccount.com"
    fakes.iam.add(shared)
    runtime = fresh(gcp, clock, service_account_template=shared)
    made = run_steps(runtime, make_spec(artifact, mode="open"))
    run_steps(runtime, make_spec(artifact, endpoint="iris-test", mode="open"))

    base.run_steps(runtime.delete_steps(teardown(artifact, (made,))))

    assert fakes.iam.emails(PROJECT) == [shared]
    assert list(fakes.run.services) == [f"projects/{PROJECT}/locations/us-central1/services/iris-test"]


def test_a_service_at_the_endpoints_name_the_portal_did_not_make_is_left_alone(gcp, fakes, artifact):
    fakes.run.services[SERVICE] = run_v2.Service(name=SERVICE, labels={"team": "ops"})

    base.run_steps(gcp.delete_steps(teardown(artifact)))

    assert list(fakes.run.services) == [SERVICE]
    assert "DeleteService" not in fakes.run.methods()


def test_the_plan_of_a_delete_names_what_exists_and_nothing_once_deleted(gcp, fakes, artifact):
    made, key_names = deploy(gcp, artifact, "ip_allowlist")
    spec = teardown(artifact, (made,), key_names)
    before = leftovers(fakes)

    plan = base.plan_of(gcp.delete_steps(spec))

    assert leftovers(fakes) == before  # planning changed nothing
    deleting = {change.step for change in plan if change.action in ("delete", "update")}
    assert deleting == {
        "delete_load_balancer",
        "delete_security_policy",
        "delete_service",
        "revoke_bucket_read",
        "delete_service_account",
        "delete_artifacts",
    }
    (lb,) = [change for change in plan if change.step == "delete_load_balancer"]
    assert lb.detail.startswith(
        "delete iris-prod-https, iris-prod-proxy, iris-prod-urlmap, iris-prod-backend"
    )
    assert {c.action for c in plan if c.step in ("delete_gateway", "delete_api", "delete_keys")} == {"none"}

    base.run_steps(gcp.delete_steps(spec))

    assert {change.action for change in base.plan_of(gcp.delete_steps(spec))} == {"none"}


# --- the fakes refuse what Google refuses --------------------------------------------------------


def test_the_fakes_refuse_deleting_what_something_still_uses(gcp, fakes, artifact):
    made, _ = deploy(gcp, artifact, "api_key")
    client = gcp.ctx.clients.gateway()
    with pytest.raises(gexc.FailedPrecondition):
        client.delete_api_config(name=made["api_config"])
    with pytest.raises(gexc.FailedPrecondition):
        client.delete_api(name=made["api"])

    fakes.reset()
    deploy(gcp, artifact, "ip_allowlist")
    with pytest.raises(gexc.BadRequest, match="is already being used by") as refused:
        gcp.ctx.clients.compute("UrlMapsClient").delete_unary(project=PROJECT, url_map="iris-prod-urlmap")
    assert refused.value.errors[0]["reason"] == "resourceInUseByAnotherResource"
    with pytest.raises(gexc.BadRequest, match="backendServices/iris-prod-backend"):
        gcp.ctx.clients.compute("SecurityPoliciesClient").delete_unary(
            request=compute_v1.DeleteSecurityPolicyRequest(
                project=PROJECT, security_policy="iris-prod-allowlist"
            )
        )
    assert "global/urlMaps/iris-prod-urlmap" in fakes.compute.resources
    assert "iris-prod-allowlist" in fakes.compute.policies


def test_a_gateway_being_deleted_still_holds_its_config_until_its_operation_is_done(gcp, fakes, artifact):
    made, _ = deploy(gcp, artifact, "api_key")
    fakes.gateway.operation_polls = 2
    client = gcp.ctx.clients.gateway()
    client.delete_gateway(name=made["gateway"])

    with pytest.raises(gexc.FailedPrecondition, match="in use by a gateway"):
        client.delete_api_config(name=made["api_config"])
    fakes.gateway.finish_operations()
    assert fakes.gateway.gateways == {}


def test_a_negative_instance_count_is_refused(gcp, fakes, artifact):
    deploy(gcp, artifact, "open")
    service = fakes.run.service(SERVICE)
    service.scaling = run_v2.ServiceScaling(scaling_mode=MANUAL, manual_instance_count=-1)

    with pytest.raises(gexc.InvalidArgument, match="must not be negative"):
        gcp.ctx.clients.run().update_service(request={"service": service})
