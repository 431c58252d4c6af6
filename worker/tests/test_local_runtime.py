"""The local runtime on its own (no Celery): real serving processes on loopback."""

import hashlib
import itertools
import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from endpoints.demo import IRIS_FEATURES, IRIS_LABELS
from endpoints.sealing import key_hash
from tests.fixtures.worker import revision_pid, session_ports, stop_serving_processes
from worker.runtimes.base import (
    AccessPolicy,
    Change,
    DeploySpec,
    KeyRecord,
    KeySpec,
    ModelSpec,
    PermanentError,
    Resources,
    TeardownSpec,
    plan_of,
    run_steps,
)
from worker.runtimes.local import LocalRuntime, launcher, processes
from worker.runtimes.local.state import EndpointDir

SETOSA = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))
OPEN = AccessPolicy(mode="open")
STEP_NAMES = ["artifact", "access", "start", "ready", "switch", "stop_previous"]


_names = itertools.count(1)


@pytest.fixture
def runtime_dir(settings):
    # The runtime dir of the whole session (see conftest), so every test forks its serving
    # processes from one warm launcher; each test has endpoint names of its own.
    root = Path(settings.LOCAL_RUNTIME_DIR)
    settings.LOCAL_RUNTIME_PORT_MIN, settings.LOCAL_RUNTIME_PORT_MAX = session_ports()
    yield root
    stop_serving_processes(root)


@pytest.fixture
def runtime(runtime_dir):
    return LocalRuntime()


@pytest.fixture
def name(runtime_dir):
    """An endpoint name no other test uses."""
    return f"iris{next(_names)}"


@pytest.fixture
def endpoint_dir(runtime_dir, name):
    return runtime_dir / "endpoints" / name


@pytest.fixture
def iris_model(iris_bytes, tmp_path):
    return model_spec(tmp_path / "iris.skops", iris_bytes, version=1)


def model_spec(path: Path, data: bytes, *, version: int, sha256: str | None = None) -> ModelSpec:
    path.write_bytes(data)
    return ModelSpec(
        name="iris",
        version=version,
        artifact_path=str(path),
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        format="skops",
        input_schema=tuple({"name": name, "type": "number"} for name in IRIS_FEATURES),
        classes=(0, 1, 2),
        label_map=IRIS_LABELS,
    )


def deploy_spec(
    name: str, model: ModelSpec, deployment_id: int, *, access=OPEN, traffic_percent=100, previous=None
):
    return DeploySpec(
        endpoint=name,
        deployment_id=deployment_id,
        model=model,
        resources=Resources(),
        access=access,
        traffic_percent=traffic_percent,
        previous=previous or {},
    )


def deploy(runtime, spec, resources=None) -> dict:
    """Run every step as the deployment service does, merging the resources they return."""
    resources = dict(resources or {})
    for step in runtime.deploy_steps(spec):
        resources.update(step.run(resources).resources)
    return resources


def predict(url: str, *, client: httpx.Client | None = None, key: str | None = None, **kwargs):
    headers = {"x-api-key": key} if key else {}
    if client is not None:
        return client.post(f"{url}/predict", json=SETOSA, headers=headers, **kwargs)
    return httpx.post(f"{url}/predict", json=SETOSA, headers=headers, timeout=10, **kwargs)


def serving_pids(endpoint_dir: Path) -> list[int]:
    """Every running serving process of the endpoint."""
    pids = []
    for pid_file in endpoint_dir.glob("*.pid"):
        pid = processes.read_pid_file(pid_file)
        if pid is not None:
            pids.append(pid)
    return pids


def test_deploying_iris_serves_predictions_on_the_stable_url(
    runtime, name, endpoint_dir, iris_model, settings
):
    spec = deploy_spec(name, iris_model, 1)
    steps = runtime.deploy_steps(spec)
    assert [step.name for step in steps] == STEP_NAMES

    resources, messages = {}, []
    for step in steps:
        result = step.run(resources)
        messages.append(result.message)
        resources.update(result.resources)

    port = int((endpoint_dir / "port").read_text())
    assert settings.LOCAL_RUNTIME_PORT_MIN <= port <= settings.LOCAL_RUNTIME_PORT_MAX
    assert resources["url"] == f"http://127.0.0.1:{port}"
    assert resources["revision"] == f"{name}-d1"
    assert resources["previous_revision"] is None
    assert (endpoint_dir / "current").read_text().strip() == f"{name}-d1"
    assert all(messages), messages
    assert "first version" in messages[-1]
    response = predict(resources["url"])
    assert response.status_code == 200, response.text
    assert response.json()["target"] == "setosa"


def test_without_its_launcher_the_runtime_starts_serving_cold(
    runtime, name, endpoint_dir, iris_model, monkeypatch
):
    monkeypatch.setattr(launcher, "spawn", lambda *args, **kwargs: None)
    live = deploy(runtime, deploy_spec(name, iris_model, 1))
    [pid] = serving_pids(endpoint_dir)
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:3] == [b"-m", b"serving"]
    assert predict(live["url"]).json()["target"] == "setosa"


def test_the_launcher_records_the_pid_it_forked_before_it_answers(runtime, name, iris_model, settings):
    runtime.warm_up()
    target = runtime.dir.endpoint(name)
    target.path.mkdir(parents=True, exist_ok=True)
    model = iris_model
    env = processes.serving_env(
        {
            "PORT": str(session_ports()[1]),
            "SERVING_HOST": "127.0.0.1",
            "SERVING_MODEL_URI": model.artifact_path,
            "SERVING_MODEL_META": json.dumps(model.meta()),
            "SERVING_CONTROL_SOCKET": str(target.socket_path(f"{name}-d9")),
        }
    )
    pid_file = target.pid_file(f"{name}-d9")

    pid = launcher.spawn(
        runtime.dir.root,
        env=env,
        cwd=Path(settings.BASE_DIR),
        log_path=target.log_file(f"{name}-d9"),
        pid_file=pid_file,
        timeout=30,
    )

    assert pid is not None and processes.read_pid_file(pid_file) == pid
    processes.terminate(pid, grace=2)


def test_a_launcher_whose_code_changed_is_replaced_by_a_fresh_one(
    settings, tmp_path_factory, name, iris_model
):
    # A runtime of its own, on a copy of the serving code that this test can "upgrade".
    base = tmp_path_factory.mktemp("base")
    shutil.copytree(
        Path(settings.BASE_DIR) / "serving", base / "serving", ignore=shutil.ignore_patterns("tests")
    )
    settings.BASE_DIR = base
    settings.LOCAL_RUNTIME_DIR = root = tmp_path_factory.mktemp("own")
    runtime = LocalRuntime()
    try:
        deploy(runtime, deploy_spec(name, iris_model, 1))
        old = processes.read_pid_file(launcher.pid_path(root))
        assert old is not None
        (base / "serving" / "upgraded.py").write_text("")

        live = deploy(runtime, deploy_spec(name, iris_model, 2))

        assert not processes.alive(old)
        fresh = processes.read_pid_file(launcher.pid_path(root))
        assert fresh not in (None, old)
        assert serving_pids(root / "endpoints" / name) == [revision_pid(name, f"{name}-d2")]
        assert predict(live["url"]).json()["target"] == "setosa"

        # A worker starting after an upgrade replaces the launcher before any deploy needs it.
        (base / "serving" / "upgraded_again.py").write_text("")
        runtime.warm_up()
        assert not processes.alive(fresh)
        assert processes.read_pid_file(launcher.pid_path(root)) not in (None, fresh)
    finally:
        runtime.stop_all()


def test_running_each_step_twice_keeps_one_process(runtime, name, endpoint_dir, iris_model):
    spec = deploy_spec(name, iris_model, 1)
    resources = {}
    for step in runtime.deploy_steps(spec):
        resources.update(step.run(resources).resources)
        resources.update(step.run(resources).resources)
    # And a whole second run of the same deployment (a resumed deploy) changes nothing.
    assert deploy(runtime, spec, resources)["url"] == resources["url"]

    assert len(serving_pids(endpoint_dir)) == 1
    assert predict(resources["url"]).json()["target"] == "setosa"


def test_an_artifact_with_the_wrong_sha256_fails_and_the_previous_version_keeps_serving(
    runtime, name, endpoint_dir, iris_model, iris_bytes, tmp_path
):
    live = deploy(runtime, deploy_spec(name, iris_model, 1))
    damaged = model_spec(tmp_path / "damaged.skops", iris_bytes[:-10] + b"0123456789", version=2)
    damaged = ModelSpec(**{**damaged.__dict__, "sha256": hashlib.sha256(b"what was uploaded").hexdigest()})

    steps = runtime.deploy_steps(deploy_spec(name, damaged, 2, previous=live))
    with pytest.raises(PermanentError, match="sha256 mismatch"):
        steps[0].run(live)

    assert predict(live["url"]).json()["target"] == "setosa"
    assert len(serving_pids(endpoint_dir)) == 1


def test_an_artifact_serving_cannot_load_fails_at_ready_with_its_log(
    runtime, name, endpoint_dir, iris_model, tmp_path
):
    live = deploy(runtime, deploy_spec(name, iris_model, 1))
    live_pid = revision_pid(name, f"{name}-d1")
    garbage = model_spec(tmp_path / "garbage.skops", b"this is not a zip archive at all", version=2)

    with pytest.raises(PermanentError, match="not a skops file") as failure:
        deploy(runtime, deploy_spec(name, garbage, 2, previous=live), live)

    assert "exited before it was ready" in str(failure.value)
    assert predict(live["url"]).json()["target"] == "setosa"
    assert serving_pids(endpoint_dir) == [live_pid]
    assert (endpoint_dir / "current").read_text().strip() == f"{name}-d1"


class Hammer:
    """Clients calling the stable URL until stopped: new connections and keep-alive ones."""

    def __init__(
        self, url: str, *, key: str | None = None, keepalive_clients: int = 2, fresh_clients: int = 2
    ):
        self.url = url
        self.key = key
        self.ok = 0
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(True,), daemon=True) for _ in range(keepalive_clients)
        ] + [threading.Thread(target=self._run, args=(False,), daemon=True) for _ in range(fresh_clients)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self, keepalive: bool) -> None:
        client = httpx.Client(timeout=15) if keepalive else None
        try:
            while not self.stopping.is_set():
                try:
                    if client is None:
                        with httpx.Client(timeout=15) as once:
                            response = predict(self.url, client=once, key=self.key)
                    else:
                        response = predict(self.url, client=client, key=self.key)
                    if response.status_code != 200:
                        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
                    with self.lock:
                        self.ok += 1
                except Exception as exc:
                    with self.lock:
                        self.failures.append(f"{'keep-alive' if keepalive else 'fresh'}: {exc!r}")
        finally:
            if client is not None:
                client.close()

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        target = self.ok + count
        while self.ok < target and time.monotonic() < deadline:
            time.sleep(0.02)


def test_redeploying_under_load_fails_no_request_and_stops_the_old_process(
    runtime, name, endpoint_dir, iris_model, iris_bytes, tmp_path
):
    live = deploy(runtime, deploy_spec(name, iris_model, 1))
    old_pid = revision_pid(name, f"{name}-d1")
    second = model_spec(tmp_path / "iris-2.skops", iris_bytes, version=2)

    with Hammer(live["url"]) as hammer:
        hammer.wait_for(20)
        swapped = deploy(runtime, deploy_spec(name, second, 2, previous=live), live)
        hammer.wait_for(20)

    assert hammer.failures == []
    assert hammer.ok > 40
    assert swapped["url"] == live["url"]
    assert swapped["previous_revision"] == f"{name}-d1"
    assert not processes.alive(old_pid)
    assert serving_pids(endpoint_dir) == [revision_pid(name, f"{name}-d2")]
    assert not (endpoint_dir / f"{name}-d1.pid").exists()


def key_record(secret: str, *, revoked=False) -> KeyRecord:
    return KeyRecord(prefix=secret[:12], key_hash=key_hash(secret), expires_at=None, revoked=revoked)


def wait_until(check, timeout: float = 5.0):
    """Poll `check` until it returns something true (the access file is re-read within ~0.5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.05)


def test_access_changes_take_effect_on_the_running_process(runtime, name, iris_model):
    issued = runtime.issue_key(KeySpec(endpoint=name, key_id="r1", display_name="team key"))
    live = deploy(runtime, deploy_spec(name, iris_model, 1, access=AccessPolicy(mode="api_key")))
    url = live["url"]

    assert predict(url).status_code == 401
    runtime.apply_access(name, AccessPolicy(mode="api_key", keys=(key_record(issued.secret),)))
    # In force when apply_access returns: no waiting for the process to notice the file.
    assert predict(url, key=issued.secret).json()["target"] == "setosa"
    assert predict(url, key="mep_" + "x" * 43).status_code == 401

    in_query = httpx.post(f"{url}/predict", params={"key": issued.secret}, json=SETOSA, timeout=10)
    assert in_query.status_code in (400, 401, 403)
    in_query = httpx.post(f"{url}/predict", params={"x-api-key": issued.secret}, json=SETOSA, timeout=10)
    assert in_query.status_code in (400, 401, 403)

    runtime.apply_access(name, AccessPolicy(mode="api_key", keys=(key_record(issued.secret, revoked=True),)))
    assert predict(url, key=issued.secret).status_code == 403


def test_an_allowlist_refuses_addresses_outside_it(runtime, name, iris_model):
    live = deploy(
        runtime, deploy_spec(name, iris_model, 1, access=AccessPolicy(mode="ip_allowlist", cidrs=()))
    )
    url = live["url"]
    assert predict(url).status_code == 403  # nobody is on the list yet
    runtime.apply_access(name, AccessPolicy(mode="ip_allowlist", cidrs=("127.0.0.1/32",)))
    outside = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10)
    with outside:
        assert predict(url).status_code == 200
        assert predict(url, client=outside).status_code == 403
        runtime.apply_access(name, AccessPolicy(mode="ip_allowlist", cidrs=("127.0.0.0/8",)))
        assert predict(url, client=outside).status_code == 200
        runtime.apply_access(name, AccessPolicy(mode="ip_allowlist", cidrs=()))
        assert predict(url).status_code == predict(url, client=outside).status_code == 403


def test_a_key_and_an_allowed_address_are_both_needed_in_mode_both(runtime, name, iris_model):
    issued = runtime.issue_key(KeySpec(endpoint=name, key_id="r7", display_name="team key"))
    policy = AccessPolicy(mode="both", keys=(key_record(issued.secret),), cidrs=("127.0.0.1/32",))
    live = deploy(runtime, deploy_spec(name, iris_model, 1, access=policy))
    outside = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10)
    with outside:
        assert predict(live["url"], key=issued.secret).status_code == 200
        assert predict(live["url"]).status_code == 401
        assert predict(live["url"], client=outside, key=issued.secret).status_code == 403


def test_issuing_a_key_names_it_by_the_endpoint_and_key_id(runtime, name):
    first = runtime.issue_key(KeySpec(endpoint=name, key_id="r3", display_name="x"))
    second = runtime.issue_key(KeySpec(endpoint=name, key_id="r3", display_name="x"))
    assert first.name == second.name == f"local:{name}:r3"
    assert first.secret.startswith("mep_") and len(first.secret) >= 40
    assert first.secret != second.secret
    runtime.revoke_key(name, first.name)  # nothing to do at runtime level, and no error


def test_a_live_revision_whose_process_died_is_started_again_on_the_same_port(
    runtime, name, endpoint_dir, iris_model
):
    spec = deploy_spec(name, iris_model, 1)
    live = deploy(runtime, spec)
    assert runtime.ensure_serving(spec) is False  # running: nothing to do

    pid = revision_pid(name, f"{name}-d1")
    processes.terminate(pid, grace=0.1)
    assert revision_pid(name, f"{name}-d1") is None

    assert runtime.ensure_serving(spec) is True
    assert predict(live["url"]).json()["target"] == "setosa"
    assert len(serving_pids(endpoint_dir)) == 1
    assert runtime.ensure_serving(spec) is False


def test_an_older_deployment_never_serves_again_once_a_later_one_is_live(
    runtime, name, endpoint_dir, iris_model
):
    old = deploy_spec(name, iris_model, 1)
    deploy(runtime, old)
    live = deploy(runtime, deploy_spec(name, iris_model, 2))

    assert runtime.ensure_serving(old) is False  # revival with a stale view of what is live
    steps = {step.name: step for step in runtime.deploy_steps(old)}  # a deploy resumed too late
    resources = {}
    for step in ("artifact", "access", "start", "ready"):
        resources.update(steps[step].run(resources).resources)
    with pytest.raises(PermanentError, match=f"{name}-d2, a later deployment, already serves"):
        steps["switch"].run(resources)

    assert revision_pid(name, f"{name}-d1") is None
    assert serving_pids(endpoint_dir) == [revision_pid(name, f"{name}-d2")]
    assert predict(live["url"]).status_code == 200


def test_a_serving_process_nobody_recorded_is_stopped_and_its_port_taken(
    runtime, name, endpoint_dir, iris_model
):
    deploy(runtime, deploy_spec(name, iris_model, 1))
    orphan = revision_pid(name, f"{name}-d1")
    target = runtime.dir.endpoint(name)
    target.pid_file(f"{name}-d1").unlink()  # as if its worker died before recording it
    target.set_current(None)

    live = deploy(runtime, deploy_spec(name, iris_model, 2))

    assert not processes.alive(orphan)
    assert serving_pids(endpoint_dir) == [revision_pid(name, f"{name}-d2")]
    assert predict(live["url"]).status_code == 200


def test_a_stopped_endpoint_starts_again_on_its_port(runtime, name, endpoint_dir, iris_model):
    spec = deploy_spec(name, iris_model, 1)
    live = deploy(runtime, spec)
    pid = revision_pid(name, f"{name}-d1")
    [stop] = runtime.stop_steps(spec)
    assert stop.plan() == [Change("stop", "delete", f"stop {name}-d1")]

    assert stop.run({}).message == f"Stopped {name}-d1."

    assert stop.plan() == [Change("stop", "none", "nothing is running")]
    assert not processes.alive(pid)
    assert serving_pids(endpoint_dir) == []
    with pytest.raises(httpx.ConnectError):
        predict(live["url"])

    started = run_steps(runtime.start_steps(spec))

    assert started["url"] == live["url"]
    assert predict(live["url"]).status_code == 200
    assert serving_pids(endpoint_dir) == [revision_pid(name, f"{name}-d1")]


def test_deleting_an_endpoint_removes_its_processes_files_port_and_own_artifacts(
    runtime, name, endpoint_dir, iris_model
):
    spec = deploy_spec(name, iris_model, 1)
    live = deploy(runtime, spec)
    artifact = runtime.dir.artifact(spec.model.sha256, spec.model.format)
    teardown = TeardownSpec(endpoint=name, made=(live,), artifacts=(spec.model,))
    steps = runtime.delete_steps(teardown)
    assert [change.action for change in plan_of(steps)] == ["delete", "delete", "delete"]

    # A worker dies after the first step; another one runs them all again.
    steps[0].run({})
    run_steps(LocalRuntime(runtime.dir.root).delete_steps(teardown))

    assert not endpoint_dir.exists() and not artifact.exists()
    with pytest.raises(httpx.ConnectError):
        predict(live["url"])
    assert [change.action for change in plan_of(steps)] == ["none", "none", "none"]
    assert run_steps(steps) == {}  # deleting what is gone is fine

    again = deploy(runtime, deploy_spec(name, iris_model, 2))  # the name is free for a new endpoint
    assert predict(again["url"]).status_code == 200


def test_deleting_keeps_an_artifact_another_endpoint_uses(runtime, name, iris_model):
    spec = deploy_spec(name, iris_model, 1)
    deploy(runtime, spec)
    artifact = runtime.dir.artifact(spec.model.sha256, spec.model.format)

    run_steps(runtime.delete_steps(TeardownSpec(endpoint=name)))  # the portal found it shared

    assert artifact.exists()


def test_two_endpoints_get_two_stable_ports(runtime, name, iris_model):
    first = deploy(runtime, deploy_spec(name, iris_model, 1))
    other = DeploySpec(**{**deploy_spec(name, iris_model, 2).__dict__, "endpoint": f"{name}-eu"})
    second = deploy(runtime, other)
    assert first["url"] != second["url"]
    assert predict(second["url"]).json()["target"] == "setosa"


def test_only_the_logs_of_recent_revisions_are_kept(tmp_path):
    target = EndpointDir(tmp_path, "iris")
    target.path.mkdir(parents=True)
    for number in range(1, 15):
        target.log_file(f"iris-d{number}").write_text("log\n")

    target.prune_logs(keep=10, live=("iris-d2",))

    kept = sorted(int(path.stem.removeprefix("iris-d")) for path in target.path.glob("*.log"))
    assert kept == [2, *range(5, 15)]


SECRETS = {
    "SECRET_KEY": "portal-secret",
    "DATABASE_URL": "postgres://portal:password@db/portal",
    "CELERY_BROKER_URL": "redis://:password@redis/0",
    "GOOGLE_APPLICATION_CREDENTIALS": "/secrets/adc.json",
}


@pytest.mark.parametrize("warm", [True, False], ids=["from the launcher", "cold"])
def test_a_serving_process_loading_a_skops_file_sees_none_of_the_portals_secrets(
    runtime, runtime_dir, name, endpoint_dir, iris_model, monkeypatch, warm
):
    for variable, value in SECRETS.items():
        monkeypatch.setenv(variable, value)
    launcher.stop(runtime_dir)  # a launcher started from this environment, not an earlier one
    if not warm:
        monkeypatch.setattr(launcher, "spawn", lambda *args, **kwargs: None)
    live = deploy(runtime, deploy_spec(name, iris_model, 1))
    assert predict(live["url"]).json()["target"] == "setosa"
    [pid] = serving_pids(endpoint_dir)
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode()
    for variable, value in SECRETS.items():
        assert variable not in environ and value not in environ
    launcher.stop(runtime_dir)
