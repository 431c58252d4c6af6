"""Plan mode (what a deploy would change, changing nothing) and rollback by traffic, on the fakes."""

import dataclasses

import pytest

from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import PROJECT, make_spec, run_steps
from worker.runtimes.base import PermanentError

SERVICE = f"projects/{PROJECT}/locations/us-central1/services/iris-prod"
API = f"projects/{PROJECT}/locations/global/apis/iris-prod"
GATEWAY = f"projects/{PROJECT}/locations/us-central1/gateways/iris-prod"
WRITES = {
    "UpdateService", "SetIamPolicy", "CreateApi", "CreateApiConfig", "CreateGateway", "UpdateGateway",
    "CreateServiceAccount",
}  # fmt: skip


def writes(fakes) -> list[str]:
    grpc_calls = fakes.run.methods() + fakes.gateway.methods() + fakes.usage.methods() + fakes.iam.methods()
    calls = [m for m in grpc_calls if m in WRITES]
    validate_only = [r for r in fakes.run.requests("UpdateService") if r.validate_only]
    calls = [m for m in calls if m != "UpdateService"] + ["UpdateService"] * (
        len(fakes.run.requests("UpdateService")) - len(validate_only)
    )
    rest = [m for m in fakes.storage.methods() + fakes.compute.methods() if not m.startswith("GET ")]
    return calls + rest


def test_planning_a_first_key_deploy_lists_every_creation_and_writes_nothing(gcp, fakes, artifact):
    changes = gcp.plan(make_spec(artifact, deployment_id=4))

    assert writes(fakes) == []
    assert fakes.run.services == {} and fakes.gateway.apis == {} and fakes.iam.emails(PROJECT) == []
    assert [(c.step, c.action) for c in changes] == [
        ("preconditions", "none"),
        ("service_account", "create"),
        ("artifact", "create"),
        ("artifact", "update"),
        ("revision", "update"),
        ("invoker", "update"),
        ("gateway_config", "create"),
        ("gateway_config", "create"),
        ("managed_service", "update"),
        ("gateway", "create"),
    ]
    assert (
        "deploy revision iris-prod-d4, traffic iris-prod-d4 100% (validated by Cloud Run)"
        in changes[4].detail
    )
    assert changes[0].detail.startswith("The project is ready: all ")
    assert [c.detail for c in changes[6:]] == [
        f"create API {API}",
        "create API config iris-prod-d4 (routes: POST /predict, GET /v1/model)",
        "enable the new API's managed service",
        f"create gateway {GATEWAY} on iris-prod-d4",
    ]
    (validated,) = fakes.run.requests("UpdateService")
    assert validated.validate_only


@pytest.mark.parametrize("mode", ["api_key", "both", "ip_allowlist", "open"])
def test_each_step_plans_only_what_it_does_itself(gcp, fakes, artifact, mode):
    spec = make_spec(artifact, mode=mode, cidrs=("198.51.100.0/24",))

    for step in gcp.deploy_steps(spec):
        if step.plan is not None:
            assert {change.step for change in step.plan()} == {step.name}


def test_planning_after_a_deploy_shows_only_the_new_revision_and_config(gcp, fakes, artifact):
    first = run_steps(gcp, make_spec(artifact, deployment_id=1))
    fakes.clear_calls()

    changes = gcp.plan(make_spec(artifact, deployment_id=2, previous=first))

    # IAM is only read, by the project check (the gateway's account and acting as it).
    assert writes(fakes) == [] and fakes.iam.methods() == ["GetServiceAccount", "TestIamPermissions"]
    assert [(c.step, c.action) for c in changes] == [
        ("preconditions", "none"),
        ("service_account", "none"),
        ("artifact", "none"),
        ("revision", "update"),
        ("invoker", "none"),
        ("gateway_config", "create"),
        ("gateway", "update"),
    ]
    assert changes[-1].detail == "point gateway iris-prod from iris-prod-d1 to iris-prod-d2"


def test_planning_shows_cloud_runs_refusal_as_an_error(gcp, fakes, artifact):
    changes = gcp.plan(make_spec(artifact, cpu="0.5", concurrency=80))

    (error,) = [c for c in changes if c.action == "error"]
    assert error.step == "revision"
    assert "Total cpu < 1 is not supported with concurrency > 1" in error.detail


def test_planning_an_allowlist_edit_shows_the_rule_diff_and_missing_lb_pieces(gcp, fakes, artifact):
    spec = make_spec(artifact, mode="ip_allowlist", cidrs=tuple(f"203.0.113.{i}/32" for i in range(11)))
    run_steps(gcp, spec, only=("allowlist",))
    fakes.clear_calls()

    changes = gcp.plan(
        dataclasses.replace(spec, access=dataclasses.replace(spec.access, cidrs=("192.0.2.0/24",)))
    )

    assert writes(fakes) == []
    allowlist = [c for c in changes if c.step == "allowlist"]
    assert allowlist[0].detail == "iris-prod-allowlist: add [], update [1000], remove [1010]"
    (lb,) = [c for c in changes if c.step == "load_balancer"]
    assert lb.action == "create" and "iris-prod-https" in lb.detail


def test_a_rollback_moves_traffic_and_the_gateway_back_without_building_anything(gcp, fakes, artifact):
    first = run_steps(gcp, make_spec(artifact, deployment_id=1))
    second = run_steps(gcp, make_spec(artifact, deployment_id=2, previous=first))
    fakes.clear_calls()
    base = make_spec(artifact, deployment_id=3, previous=second)
    spec = dataclasses.replace(base, rollback_to=first)

    resources = run_steps(gcp, spec)

    assert [step.name for step in gcp.deploy_steps(spec)] == [
        "traffic",
        "traffic_ready",
        "gateway",
        "gateway_ready",
    ]
    assert fakes.run.methods() == ["GetService", "UpdateService", "GetOperation"]
    assert fakes.gateway.methods() == ["UpdateGateway", "GetOperation"]
    assert fakes.storage.methods() == []
    assert fakes.run.revision_ids(SERVICE) == ["iris-prod-d1", "iris-prod-d2"]
    status = fakes.run.service(SERVICE).traffic_statuses
    assert [(s.revision, s.percent) for s in status] == [("iris-prod-d1", 100)]
    assert fakes.gateway.gateways[GATEWAY].api_config == f"{API}/configs/iris-prod-d1"
    assert len(fakes.gateway.configs) == 2
    assert resources["revision"] == "iris-prod-d1" and resources["api_config_id"] == "iris-prod-d1"
    assert resources["gateway_url"] == second["gateway_url"]


def test_a_rollback_to_a_revision_that_is_gone_fails_with_cloud_runs_message(gcp, fakes, artifact):
    first = run_steps(gcp, make_spec(artifact, deployment_id=1))
    gone = {**first, "revision": "iris-prod-d0"}
    base = make_spec(artifact, deployment_id=3, previous=first)
    spec = dataclasses.replace(base, rollback_to=gone)

    with pytest.raises(PermanentError, match="Revision 'iris-prod-d0' referenced in traffic not found"):
        run_steps(gcp, spec)


def test_redeploys_keep_only_the_newest_configs_and_stay_under_the_gateways_quota(gcp, fakes, artifact):
    made = run_steps(gcp, make_spec(artifact, deployment_id=1))
    history = [made]
    for number in range(2, 121):
        made = run_steps(gcp, make_spec(artifact, deployment_id=number, previous=made))
        history.append(made)
        assert len(fakes.gateway.configs) <= gcp.cfg.keep_api_configs

    assert sorted(fakes.gateway.configs) == sorted(f"{API}/configs/iris-prod-d{n}" for n in range(116, 121))
    assert fakes.gateway.gateways[GATEWAY].api_config == f"{API}/configs/iris-prod-d120"
    assert made["pruned_configs"] == [f"{API}/configs/iris-prod-d115"]
    fakes.clear_calls()

    recent = dataclasses.replace(
        make_spec(artifact, deployment_id=121, previous=made), rollback_to=history[-3]
    )
    run_steps(gcp, recent)
    assert fakes.gateway.gateways[GATEWAY].api_config == f"{API}/configs/iris-prod-d118"

    pruned = dataclasses.replace(
        make_spec(artifact, deployment_id=122, previous=made), rollback_to=history[0]
    )
    with pytest.raises(PermanentError, match="does not exist"):
        run_steps(gcp, pruned)


def test_pruning_never_deletes_the_config_the_gateway_serves_and_runs_again_as_success(gcp, fakes, artifact):
    made = run_steps(gcp, make_spec(artifact, deployment_id=1))
    for number in range(2, 8):
        made = run_steps(gcp, make_spec(artifact, deployment_id=number, previous=made))
    # Rolled back to d3: the gateway serves d3's config; the next deploy must not delete it first.
    fakes.gateway.gateways[GATEWAY].api_config = f"{API}/configs/iris-prod-d3"
    spec = make_spec(artifact, deployment_id=8, previous=made)
    done = run_steps(gcp, spec, only=("revision", "revision_ready", "gateway_config", "gateway_config_ready"))
    step = next(step for step in gcp.deploy_steps(spec) if step.name == "prune_configs")

    first = step.run(done).resources
    again = step.run({**done, **first}).resources

    kept = sorted(name.rsplit("-", 1)[-1] for name in fakes.gateway.configs)
    assert kept == ["d3", "d5", "d6", "d7", "d8"]
    assert again["pruned_configs"] == first["pruned_configs"] == [f"{API}/configs/iris-prod-d4"]
