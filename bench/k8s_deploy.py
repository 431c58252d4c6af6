"""The kubernetes runtime against the fake Kubernetes API server: API calls and wall time per step.

    .venv/bin/python -m bench.k8s_deploy [--rounds 20]

The official client talks to the fake API server (tests/fakes/kubernetes_api) on loopback. Waits
the runtime asks for (polling a rollout) are recorded, not slept, so the wall time is the
runtime's own work plus the wire; the count of calls per step is what a real cluster would be
sent. Scenarios, each on an emptied cluster: a first deploy, the next deploy (a new revision rolled
out), a rollback to the first, a key change (the access Secret rewritten), a stop and a start,
and the endpoint's delete (which must leave the cluster holding nothing of it). The baseline,
measured in the same run, is one read of a Deployment: the least any step that talks to the API
server can cost.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

from tests.fakes.kubernetes_api import FakeKubernetes, KubernetesApiFake, write_kubeconfig  # noqa: E402
from worker.runtimes.base import (  # noqa: E402
    AccessPolicy,
    DeploySpec,
    KeyRecord,
    ModelSpec,
    Pending,
    Resources,
    Step,
    TeardownSpec,
)

ENDPOINT = "bench"
KINDS = ("Deployment", "ReplicaSet", "Pod", "Service", "HorizontalPodAutoscaler", "Secret")


def runtime_for(fake: FakeKubernetes, artifacts: Path):
    from worker.runtimes.kubernetes.config import KubernetesConfig
    from worker.runtimes.kubernetes.runtime import KubernetesRuntime

    cfg = KubernetesConfig.from_values(
        {
            "KUBERNETES_KUBECONFIG": fake.kubeconfig,
            "KUBERNETES_NAMESPACE": fake.namespace,
            "KUBERNETES_IMAGE": "registry.example/model-serving:1",
            "KUBERNETES_ARTIFACT_CLAIM": "model-artifacts",
            "KUBERNETES_ARTIFACT_DIR": str(artifacts),
        }
    )
    clock = {"now": time.time()}

    def sleep(seconds: float) -> None:  # recorded, not slept: the cluster moves with our reads
        clock["now"] += seconds

    return KubernetesRuntime(cfg, sleep=sleep, clock=lambda: clock["now"], wall=lambda: clock["now"])


def run_all(
    fake: FakeKubernetes, steps: list[Step], resources: dict | None = None
) -> tuple[dict, list[dict]]:
    """Run the steps as the portal does (a Pending step is run again, as the task's retry would)."""
    resources, rows = dict(resources or {}), []
    for step in steps:
        before, handbacks, started = len(fake.requests), 0, time.perf_counter()
        while True:
            try:
                result = step.run(resources)
                break
            except Pending:
                handbacks += 1
                if handbacks > 50:
                    raise RuntimeError(f"step {step.name} never finishes") from None
        resources.update(result.resources)
        calls = fake.requests[before:]
        rows.append(
            {
                "step": step.name,
                "ms": (time.perf_counter() - started) * 1000,
                "calls": len(calls),
                "writes": sum(1 for method, _ in calls if method != "GET"),
                "handbacks": handbacks,
            }
        )
    return resources, rows


def measured(fake: FakeKubernetes, name: str, call) -> list[dict]:
    """One call outside a step (a key change is pushed by `apply_access`), counted as a step."""
    before, started = len(fake.requests), time.perf_counter()
    call()
    calls = fake.requests[before:]
    ms = (time.perf_counter() - started) * 1000
    writes = sum(1 for method, _ in calls if method != "GET")
    return [{"step": name, "ms": ms, "calls": len(calls), "writes": writes, "handbacks": 0}]


def model(tmp: Path) -> ModelSpec:
    data = os.urandom(64 * 1024)
    path = tmp / "model.skops"
    path.write_bytes(data)
    return ModelSpec(
        name="iris",
        version=1,
        artifact_path=str(path),
        sha256=hashlib.sha256(data).hexdigest(),
        format="skops",
        input_schema=tuple({"name": f"f{i}", "type": "number"} for i in range(4)),
        classes=(0, 1, 2),
    )


def spec(deployment_id: int, m: ModelSpec, **fields) -> DeploySpec:
    return DeploySpec(
        endpoint=ENDPOINT,
        deployment_id=deployment_id,
        model=m,
        resources=Resources(min_instances=2, max_instances=4),
        access=AccessPolicy(mode="api_key"),
        **fields,
    )


def one_round(fake: FakeKubernetes, tmp: Path, m: ModelSpec) -> dict[str, list[dict]]:
    fake.server.reset()
    runtime = runtime_for(fake, tmp / "volume")
    first, deploy1 = run_all(fake, runtime.deploy_steps(spec(1, m)))
    second, deploy2 = run_all(fake, runtime.deploy_steps(spec(2, m, previous=first)))
    back = spec(3, m, previous=second, rollback_to=first)
    _, rollback = run_all(fake, runtime.deploy_steps(back))
    keys = AccessPolicy(mode="api_key", keys=(KeyRecord("mep_benchkey0", "0" * 64),))
    access = measured(fake, "apply_access", lambda: runtime.apply_access(ENDPOINT, keys))
    live = spec(1, m, previous=first)
    _, stop = run_all(fake, runtime.stop_steps(live))
    _, start = run_all(fake, runtime.start_steps(live))
    teardown = TeardownSpec(endpoint=ENDPOINT, made=(first, second), artifacts=(m,))
    _, delete = run_all(fake, runtime.delete_steps(teardown))
    left = {kind: fake.list(kind) for kind in KINDS if fake.list(kind)}
    if left:
        raise RuntimeError(f"the delete left {sorted(left)}")
    return {
        "first deploy": deploy1,
        "next deploy": deploy2,
        "rollback to the first": rollback,
        "key change (access Secret)": access,
        "stop": stop,
        "start": start,
        "delete": delete,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    server = KubernetesApiFake(namespace="models").start()
    fake = FakeKubernetes(server, write_kubeconfig(tmp / "kubeconfig", server.endpoint, "models"))
    m = model(tmp)
    scenarios: dict[str, list[list[dict]]] = {}
    try:
        for _ in range(args.rounds):
            for title, rows in one_round(fake, tmp, m).items():
                scenarios.setdefault(title, []).append(rows)
        runtime = runtime_for(fake, tmp / "volume")
        baseline = []
        for _ in range(200):
            started = time.perf_counter()
            runtime.kube.read("Deployment", ENDPOINT)
            baseline.append((time.perf_counter() - started) * 1000)
    finally:
        fake.run_pods(None)
        server.stop()

    median = statistics.median(baseline)
    print(f"Baseline: one read of a (missing) Deployment from the fake: {median:.2f} ms (median of 200)\n")
    print("| scenario | steps | API calls (writes) | worker hand-backs | wall ms (median) |")
    print("|---|---|---|---|---|")
    for title, runs in scenarios.items():
        first = runs[0]
        calls = sum(row["calls"] for row in first)
        writes = sum(row["writes"] for row in first)
        backs = sum(row["handbacks"] for row in first)
        ms = statistics.median(sum(row["ms"] for row in run) for run in runs)
        per_step = ", ".join(f"{row['step']} {row['calls']}" for row in first)
        print(f"| {title} ({len(runs)} rounds) | {per_step} | {calls} ({writes}) | {backs} | {ms:.1f} |")


if __name__ == "__main__":
    main()
