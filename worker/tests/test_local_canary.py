"""Canary shares on the local runtime: two real serving processes answering one port."""

# ruff: noqa: F811 (the fixtures of test_local_runtime, imported, are redefined as arguments)

from serving.tests.support import versions_answering
from tests.fixtures.worker import revision_pid
from worker.runtimes.local import canary, processes
from worker.runtimes.local.state import EndpointDir
from worker.runtimes.local.steps import stop_revision
from worker.tests.test_local_runtime import (  # noqa: F401 (fixtures)
    deploy,
    deploy_spec,
    endpoint_dir,
    iris_model,
    model_spec,
    name,
    runtime,
    runtime_dir,
    serving_pids,
)


def test_a_canary_deploy_serves_its_share_beside_the_live_version_and_can_be_promoted(
    runtime, name, endpoint_dir, iris_model, iris_bytes, tmp_path, runtime_dir
):
    live = deploy(runtime, deploy_spec(name, iris_model, 1))
    second = model_spec(tmp_path / "iris-2.skops", iris_bytes, version=2)
    made = deploy(runtime, deploy_spec(name, second, 2, traffic_percent=10, previous=live), live)

    assert made["url"] == live["url"] and made["previous_revision"] == f"{name}-d1"
    target = EndpointDir(runtime_dir, name)
    assert target.current() == f"{name}-d1"
    assert target.canary() == {"revision": f"{name}-d2", "percent": 10}
    assert len(serving_pids(endpoint_dir)) == 2  # the live version was not stopped
    seen = versions_answering(live["url"], 2000)
    print(f"\nasked 10 %, version 2 answered {seen[2] / 2000:.1%} of 2,000 requests")
    assert abs(seen[2] / 2000 - 0.10) <= 0.02  # one serving worker: exactly 200

    # Reconcile finds both running and the share in place: nothing to start.
    assert runtime.ensure_serving(deploy_spec(name, second, 2, traffic_percent=10)) is False

    with target.lock():
        canary.share(target, stable=f"{name}-d1", canary=f"{name}-d2", percent=50)
    assert versions_answering(live["url"], 200) == {1: 100, 2: 100}

    stable_pid = revision_pid(name, f"{name}-d1")
    with target.lock():
        assert canary.promote(target, f"{name}-d2") == f"{name}-d1"
        stop_revision(target, f"{name}-d1")
    assert target.current() == f"{name}-d2" and target.canary() is None
    assert not processes.alive(stable_pid)
    assert versions_answering(live["url"], 50) == {2: 50}


def test_aborting_a_canary_sends_every_request_back_to_the_live_version(
    runtime, name, endpoint_dir, iris_model, iris_bytes, tmp_path, runtime_dir
):
    live = deploy(runtime, deploy_spec(name, iris_model, 1))
    second = model_spec(tmp_path / "iris-2.skops", iris_bytes, version=2)
    deploy(runtime, deploy_spec(name, second, 2, traffic_percent=30, previous=live), live)
    target = EndpointDir(runtime_dir, name)
    assert versions_answering(live["url"], 100) == {1: 70, 2: 30}
    with target.lock():
        assert canary.abort(target, f"{name}-d2") is True
    assert versions_answering(live["url"], 100) == {1: 100}
    assert target.current() == f"{name}-d1" and target.canary() is None


def test_a_full_deploy_after_a_canary_stops_both_earlier_versions(
    runtime, name, endpoint_dir, iris_model, iris_bytes, tmp_path, runtime_dir
):
    live = deploy(runtime, deploy_spec(name, iris_model, 1))
    second = model_spec(tmp_path / "iris-2.skops", iris_bytes, version=2)
    third = model_spec(tmp_path / "iris-3.skops", iris_bytes, version=3)
    made = deploy(runtime, deploy_spec(name, second, 2, traffic_percent=20, previous=live), live)
    deploy(runtime, deploy_spec(name, third, 3, previous=made), made)
    assert versions_answering(live["url"], 40) == {3: 40}
    assert serving_pids(endpoint_dir) == [revision_pid(name, f"{name}-d3")]
    assert EndpointDir(runtime_dir, name).canary() is None
