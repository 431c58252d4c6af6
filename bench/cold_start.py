"""Cold start of the serving container: `python -m bench.cold_start [--rounds N] [--families]`.

Times `python -m serving` from spawn to its first 200 on /readyz, as a container on a fresh node
would start, for each model as uploaded (skops) and as the portal deploys it (the verified ONNX
form). Rounds alternate between the two; the skops start is the baseline.

`--families` also starts each family of the model zoo (tests/zoo.py: census-style pipelines) as
the portal deploys it: from skops, its ONNX form converted and checked at start (the portal
stores no ONNX form for models fitted on tables), against the iris ONNX form of the same rounds.

The two serving images (`--images`: only this part): each one's installed size, summed from the
files every distribution of its requirements file's closure installed in this virtualenv (their
importlib.metadata RECORDs, without Docker), and the iris ONNX form's spawn to first answer with
every package the `serving-onnx` image lacks unimportable, against the full virtualenv.
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

from bench.serving.models import Workload, cancer_batches, iris_single_row, table_model
from bench.serving.runner import Target
from serving.tests.slim import FULL, SLIM, closure, installed_bytes, requirement_names, slim_env


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


def start_once(workload: Workload, directory: Path, env: dict | None = None, *, ready: bool = True):
    """Seconds from spawn to the first 200: on /readyz with the backend the server reports
    (`ready`), or to the workload's own request (then the seconds alone)."""
    target = Target(
        workload.name,
        [sys.executable, "-m", "serving"],
        {**workload.env(), "SERVING_WORKERS": "1", "SERVING_HOST": "127.0.0.1", **(env or {})},
        "/readyz" if ready else workload.route,
        workload,
    )
    started = time.perf_counter()
    target.start(directory)
    try:
        while True:
            if target.process.poll() is not None:
                raise SystemExit(f"{workload.name} exited with {target.process.returncode}")
            try:
                if ready:
                    answer = httpx.get(target.url, timeout=1)
                else:
                    body, headers = workload.body, workload.headers
                    answer = httpx.post(target.url, content=body, headers=headers, timeout=1)
                if answer.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        if not ready:
            return elapsed
        backend = orjson.loads(httpx.get(f"http://127.0.0.1:{target.port}/v1/model").content)["backend"]
        return elapsed, backend
    finally:
        target.stop()


def images(rounds: int) -> None:
    """Print each serving image's installed size, and the ONNX form's start under each import set."""
    sizes = {}
    print("\nServing images: installed size = the files of every distribution in the requirements")
    print("file's closure, as installed in this virtualenv (importlib.metadata RECORDs; no Docker).\n")
    for target, path in (("serving", FULL), ("serving-onnx", SLIM)):
        distributions = closure(requirement_names(path))
        sizes[target] = installed_bytes(distributions)
        print(
            f"{target:<14}{path.relative_to(FULL.parents[1])!s:<32}{len(distributions):>3} distributions"
            f"{sizes[target] / 1e6:>9.1f} MB"
        )
    print(f"serving-onnx / serving: {sizes['serving-onnx'] / sizes['serving']:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        directory = Path(tmp)
        workload = onnx_form(iris_single_row(directory), directory)
        (directory / "slim").mkdir()
        envs = {"serving": {}, "serving-onnx": slim_env(directory / "slim")}
        times: dict[str, list[float]] = {name: [] for name in envs}
        for round_index in range(rounds):
            for name in list(envs) if round_index % 2 == 0 else list(envs)[::-1]:
                times[name].append(start_once(workload, directory, envs[name], ready=False))
    full, slim = (statistics.median(times[name]) for name in envs)
    print(f"\n{workload.name}, spawn to first answer, median of {rounds} alternating:")
    print(f"with the serving image's packages {full:.2f}s, with serving-onnx's only {slim:.2f}s", end="")
    print(f" ({slim / full:.2f}x)")


def family_workloads(directory: Path) -> list[Workload]:
    """Each zoo family as the portal deploys it (skops, with the schema read at upload)."""
    from tests.zoo import FAMILIES, census_family

    workloads = []
    for name in FAMILIES:
        path, meta = table_model(directory, name, census_family(name))
        workloads.append(Workload(name, path, meta, b"", 1))
    return workloads


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--families", action="store_true", help="also start each family of the model zoo")
    parser.add_argument("--images", action="store_true", help="only compare the two serving images")
    args = parser.parse_args()
    if args.images:
        images(args.rounds)
        return
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        directory = Path(tmp)
        pairs = []
        for workload in (iris_single_row(directory), cancer_batches(directory)):
            pairs.append((workload, onnx_form(workload, directory)))
        families = family_workloads(directory) if args.families else []
        times: dict[str, list[float]] = {}
        backends: dict[str, str] = {}
        for round_index in range(args.rounds):
            for group in [*pairs, families]:
                for workload in group if round_index % 2 == 0 else group[::-1]:
                    elapsed, backends[workload.name] = start_once(workload, directory)
                    times.setdefault(workload.name, []).append(elapsed)
    print(f"\n{args.rounds} starts each, alternating; medians.\n")
    print(f"{'artifact':<36}{'ready after':>12}{'x skops':>9}  backend")
    for skops, onnx in pairs:
        baseline = statistics.median(times[skops.name])
        for workload in (skops, onnx):
            median = statistics.median(times[workload.name])
            print(f"{workload.name:<36}{median:>11.2f}s{median / baseline:>8.2f}x  {backends[workload.name]}")
    if families:
        iris = statistics.median(times[pairs[0][1].name])
        print(f"\n{'zoo family (census pipeline, skops)':<36}{'ready after':>12}{'x iris ONNX':>13}  backend")
        for workload in families:
            median = statistics.median(times[workload.name])
            print(f"{workload.name:<36}{median:>11.2f}s{median / iris:>12.1f}x  {backends[workload.name]}")
    images(args.rounds)


if __name__ == "__main__":
    main()
