"""Cold start of the serving container: `python -m bench.cold_start [--rounds N]`.

Times `python -m serving` from spawn to its first 200 on /readyz, as a container on a fresh node
would start, for each model as uploaded (skops) and as the portal deploys it (the verified ONNX
form). Rounds alternate between the two; the skops start is the baseline.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from bench.serving.models import Workload, cancer_batches, iris_single_row
from bench.serving.runner import Target


def onnx_form(workload: Workload, directory: Path) -> Workload:
    """The workload's model as the portal stores it: converted and checked at upload."""
    from endpoints.artifacts import onnx_form
    from serving.model import load_estimator

    estimator = load_estimator(workload.path, "skops", workload.meta["trusted_types"])
    data, note = onnx_form(estimator, workload.meta["schema"])
    if data is None:
        raise SystemExit(f"{workload.name}: {note}")
    path = directory / f"{workload.path.stem}.onnx"
    path.write_bytes(data)
    meta = {
        **workload.meta,
        "format": "onnx",
        "sha256": hashlib.sha256(data).hexdigest(),
        "trusted_types": [],
    }
    return Workload(f"{workload.name} (ONNX form)", path, meta, workload.body, workload.rows_per_request)


def start_once(workload: Workload, directory: Path) -> tuple[float, str]:
    """Seconds from spawn to ready, and the backend the server reports."""
    target = Target(
        workload.name,
        [sys.executable, "-m", "serving"],
        {**workload.env(), "SERVING_WORKERS": "1", "SERVING_HOST": "127.0.0.1"},
        "/readyz",
        workload,
    )
    started = time.perf_counter()
    target.start(directory)
    try:
        while True:
            if target.process.poll() is not None:
                raise SystemExit(f"{workload.name} exited with {target.process.returncode}")
            try:
                if httpx.get(target.url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        backend = orjson.loads(httpx.get(f"http://127.0.0.1:{target.port}/v1/model").content)["backend"]
        return elapsed, backend
    finally:
        target.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        directory = Path(tmp)
        pairs = []
        for workload in (iris_single_row(directory), cancer_batches(directory)):
            pairs.append((workload, onnx_form(workload, directory)))
        times: dict[str, list[float]] = {}
        backends: dict[str, str] = {}
        for round_index in range(args.rounds):
            for pair in pairs:
                for workload in pair if round_index % 2 == 0 else pair[::-1]:
                    elapsed, backends[workload.name] = start_once(workload, directory)
                    times.setdefault(workload.name, []).append(elapsed)
    print(f"\n{args.rounds} starts each, alternating; medians.\n")
    print(f"{'artifact':<30}{'ready after':>12}{'x skops':>9}  backend")
    for skops, onnx in pairs:
        baseline = statistics.median(times[skops.name])
        for workload in (skops, onnx):
            median = statistics.median(times[workload.name])
            print(f"{workload.name:<30}{median:>11.2f}s{median / baseline:>8.2f}x  {backends[workload.name]}")


if __name__ == "__main__":
    main()
