"""A full GCP-path deploy against the fake Google servers: wall time and API calls per step.

    .venv/bin/python -m bench.gcp_deploy [--rounds 20]

The real client libraries (gRPC for Cloud Run, API Gateway, API Keys, Service Usage; REST for
Cloud Storage and Compute) talk to the fakes in tests/fakes on loopback. Waits the runtime asks
for (backoff, polling) are recorded, not slept, so the wall time is the runtime's own work plus the
wire; the count of API calls per step is what a real deploy would send. Scenarios: a first deploy,
a second one and the endpoint's delete for an API-key endpoint and for an allowlist endpoint (the
delete must leave the fakes holding nothing), then a deploy where every
operation takes five polls to finish, once with the worker handing its slot back at every poll
(GCP_OPERATION_WAIT_SECONDS=0) and once polling in the worker. The baseline, measured in the same
run, is one GetService round trip: the least any step that talks to Google can cost.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("NO_GCE_CHECK", "true")

from tests.fakes.fixtures import BUCKET, GATEWAY_SA, PROJECT, Fakes, start_fakes  # noqa: E402
from worker.runtimes.base import (  # noqa: E402
    AccessPolicy,
    DeploySpec,
    ModelSpec,
    Resources,
    TeardownSpec,
    TransientError,
)


def runtime_for(fakes: Fakes, *, wait_seconds: float = 20.0):
    from worker.runtimes.gcp.config import GcpConfig
    from worker.runtimes.gcp.runtime import GcpRuntime

    cfg = GcpConfig.from_values(
        {
            "GCP_PROJECT": PROJECT,
            "GCP_SERVING_IMAGE": "us-docker.pkg.dev/portal-test/portal/serving:1.0",
            "GCP_ARTIFACT_BUCKET": BUCKET,
            "GCP_GATEWAY_SERVICE_ACCOUNT": GATEWAY_SA,
            "GCP_LB_DOMAIN": "models.example.com",
            "GCP_API_ENDPOINT_OVERRIDES": fakes.overrides(),
            "GCP_OPERATION_WAIT_SECONDS": wait_seconds,
        }
    )
    clock = {"now": time.time()}

    def sleep(seconds: float) -> None:  # recorded, not slept: Google's time is not ours
        clock["now"] += seconds

    return GcpRuntime(cfg, sleep=sleep, clock=lambda: clock["now"], wall=lambda: clock["now"])


def counts(fakes: Fakes) -> Counter:
    total = Counter()
    for api, methods in fakes.methods().items():
        total[api] += len(methods)
    return total


def deploy(runtime, fakes: Fakes, spec: DeploySpec) -> tuple[dict, list[dict]]:
    return run_all(runtime, fakes, runtime.deploy_steps(spec))


def delete(runtime, fakes: Fakes, endpoint: str, made: list[dict], m: ModelSpec) -> list[dict]:
    """Tear down everything the deployments `made` recorded, as an endpoint's delete does."""
    teardown = TeardownSpec(endpoint=endpoint, region="us-central1", made=tuple(made), artifacts=(m,))
    return run_all(runtime, fakes, runtime.delete_steps(teardown))[1]


def run_all(runtime, fakes: Fakes, steps) -> tuple[dict, list[dict]]:
    """Run the steps like the portal does (a StillRunning step is run again, as the task retry would)."""
    resources, rows = {}, []
    for step in steps:
        before, slept_before = counts(fakes), runtime.ctx.slept
        handbacks, started = 0, time.perf_counter()
        while True:
            try:
                result = step.run(resources)
                break
            except TransientError:
                handbacks += 1
                if handbacks > 50:
                    raise RuntimeError(
                        f"step {step.name} never finishes: it restarts its work each try"
                    ) from None
        seconds = time.perf_counter() - started
        resources.update(result.resources)
        calls = counts(fakes) - before
        rows.append(
            {
                "step": step.name,
                "ms": seconds * 1000,
                "calls": dict(calls),
                "handbacks": handbacks,
                "slept": runtime.ctx.slept - slept_before,
            }
        )
    return resources, rows


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


def spec(
    endpoint: str, deployment_id: int, mode: str, m: ModelSpec, previous: dict | None = None
) -> DeploySpec:
    return DeploySpec(
        endpoint=endpoint,
        deployment_id=deployment_id,
        model=m,
        resources=Resources(),
        access=AccessPolicy(mode=mode, cidrs=tuple(f"203.0.113.{i}/32" for i in range(12))),
        previous=previous or {},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    fakes = start_fakes()
    tmp = Path(tempfile.mkdtemp())
    m = model(tmp)
    scenarios = {}
    try:
        for _ in range(args.rounds):
            for mode in ("api_key", "ip_allowlist"):
                fakes.reset()
                runtime = runtime_for(fakes)
                first, rows1 = deploy(runtime, fakes, spec("bench", 1, mode, m))
                fakes.clear_calls()
                second, rows2 = deploy(runtime, fakes, spec("bench", 2, mode, m, previous=first))
                fakes.clear_calls()
                rows3 = delete(runtime, fakes, "bench", [first, second], m)
                if fakes.held():
                    raise RuntimeError(f"the delete left {fakes.held()}")
                scenarios.setdefault(f"{mode}: first deploy", []).append(rows1)
                scenarios.setdefault(f"{mode}: next deploy", []).append(rows2)
                scenarios.setdefault(f"{mode}: delete (after both deploys)", []).append(rows3)
            for wait_seconds, label in ((0.0, "slot handed back"), (20.0, "polling in the worker")):
                fakes.reset()
                for fake in fakes.all():
                    fake.operation_polls = 5
                runtime = runtime_for(fakes, wait_seconds=wait_seconds)
                _, rows = deploy(runtime, fakes, spec("bench", 1, "api_key", m))
                scenarios.setdefault(f"api_key, 5 polls per operation, {label}", []).append(rows)
        baseline = []
        runtime = runtime_for(fakes)
        client = runtime.ctx.clients.run()
        name = f"projects/{PROJECT}/locations/us-central1/services/bench"
        for _ in range(200):
            started = time.perf_counter()
            client.get_service(name=name, timeout=10)
            baseline.append((time.perf_counter() - started) * 1000)
    finally:
        for fake in fakes.all():
            fake.stop()

    median = statistics.median(baseline)
    print(f"Baseline: one GetService round trip to the fake: {median:.2f} ms (median of 200)\n")
    for title, runs in scenarios.items():
        print(f"## {title} ({len(runs)} rounds)\n")
        print("| step | API calls | worker hand-backs | waits asked for (s) | wall ms (median) |")
        print("|---|---|---|---|---|")
        total_ms, total_calls, total_backs, total_slept = 0.0, Counter(), 0, 0.0
        for index, first in enumerate(runs[0]):
            ms = statistics.median(run[index]["ms"] for run in runs)
            calls = Counter(first["calls"])
            total_ms += ms
            total_calls += calls
            total_backs += first["handbacks"]
            total_slept += first["slept"]
            described = ", ".join(f"{api} {n}" for api, n in sorted(calls.items())) or "none"
            print(
                f"| {first['step']} | {described} | {first['handbacks']} | {first['slept']:.0f} | {ms:.1f} |"
            )
        described = ", ".join(f"{api} {n}" for api, n in sorted(total_calls.items()))
        print(
            f"| **total** | {sum(total_calls.values())} ({described}) | {total_backs} | {total_slept:.0f} | "
            f"{total_ms:.1f} |\n"
        )


if __name__ == "__main__":
    main()
