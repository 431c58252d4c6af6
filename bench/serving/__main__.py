"""Benchmark the serving container: `python -m bench.serving [--quick]`.

Starts, on loopback and all at once (idle servers cost nothing), the container, the seed-style
FastAPI baseline and the raw-ASGI floor for each model, plus the container with an access file.
Then loads one at a time with wrk, round after round, rotating the order within each scenario so
drift (other load on the machine, thermal) falls on every target alike. Ratios are taken within a
round and the median over rounds is reported.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.serving.models import Workload, cancer_batches, iris_single_row
from bench.serving.runner import Result, Target, container, run_wrk, uvicorn_app, write_access_file

KINDS = ("container", "baseline", "floor")
ACCESS = "container +access"
ACCESS_CONNECTIONS = (16, 64)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round at 16 and 64 connections")
    parser.add_argument("--rounds", type=int, help="rounds of every scenario (default 3, quick 1)")
    parser.add_argument("--seconds", type=int, help="length of each wrk run (default 3, quick 2)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="per server")
    return parser.parse_args()


def build_targets(iris: Workload, cancer: Workload, workers: int, access_file: Path) -> dict:
    targets = {}
    for workload, batch_path in ((iris, "/predict"), (cancer, "/predict/batch")):
        targets[workload.name, "container"] = container(workload, workers)
        targets[workload.name, "baseline"] = uvicorn_app(
            f"baseline {workload.name}", "bench.serving.baseline:app", workload, workers, batch_path
        )
        targets[workload.name, "floor"] = uvicorn_app(
            f"floor {workload.name}", "bench.serving.floor:app", workload, workers, "/predict"
        )
    targets[iris.name, ACCESS] = container(iris, workers, access_file)
    return targets


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def ratio_of(results: dict, key: tuple, reference: str) -> float:
    """Median over rounds of this target's requests/s over the reference's in the same round."""
    mine, other = results.get(key, []), results.get((key[0], key[1], reference), [])
    pairs = zip(mine, other, strict=True) if len(mine) == len(other) else ()
    return median([a.requests_per_second / b.requests_per_second for a, b in pairs])


def times(ratio: float) -> str:
    return "-" if math.isnan(ratio) else f"{ratio:.2f}x"


def report(results: dict, scenarios: list, rows: dict) -> None:
    columns = f"{'scenario':<24}{'target':<19}{'req/s':>9}{'rows/s':>10}{'p50 ms':>8}{'p99 ms':>8}"
    print(columns + f"{'x baseline':>12}{'x floor':>9}{'cpu us/req':>11}{'fails':>7}")
    for workload_name, connections in scenarios:
        for kind in (*KINDS, ACCESS):
            key = (workload_name, connections, kind)
            runs: list[Result] = results.get(key, [])
            if not runs:
                continue
            rps = median([run.requests_per_second for run in runs])
            cpu = median([run.cpu_us_per_request for run in runs])
            scenario = f"{workload_name} c={connections}"
            print(
                f"{scenario:<24}{kind:<19}{rps:>9.0f}{rps * rows[workload_name]:>10.0f}"
                f"{median([run.p50_ms for run in runs]):>8.2f}{median([run.p99_ms for run in runs]):>8.2f}"
                f"{times(ratio_of(results, key, 'baseline')):>12}{times(ratio_of(results, key, 'floor')):>9}"
                f"{cpu:>11.1f}{sum(run.failures for run in runs):>7}"
            )


def checks(results: dict, iris: Workload, cancer: Workload) -> list[tuple[str, float, str, bool]]:
    """The targets: (what, measured, goal, met)."""
    found = []
    key = (iris.name, 16, "container")
    if key in results:
        value = ratio_of(results, key, "baseline")
        found.append(("one row, 16 connections, vs baseline", value, ">= 10x", value >= 10))
        value = ratio_of(results, key, "floor")
        found.append(("one row, 16 connections, vs raw floor", value, ">= 0.5x", value >= 0.5))
    key = (iris.name, 64, "container")
    if key in results:
        value = median([run.p99_ms for run in results[key]])
        found.append(("one row, 64 connections, p99 ms", value, "<= 10 ms", value <= 10))
    for connections in (1, 16, 64):
        key = (cancer.name, connections, "container")
        if key in results:
            value = ratio_of(results, key, "baseline")
            found.append(
                (
                    f"64-row batches, {connections} connections, rows/s vs baseline",
                    value,
                    ">= 25x",
                    value >= 25,
                )
            )
    for connections in ACCESS_CONNECTIONS:
        key = ("access", connections, ACCESS)
        if key in results:
            pairs = zip(results[key], results["access", connections, "container"], strict=True)
            value = median(
                [checked.cpu_us_per_request / plain.cpu_us_per_request - 1 for checked, plain in pairs]
            )
            what = f"access-check overhead, {connections} conns, % server CPU/request"
            found.append((what, value * 100, "<= 5 %", value <= 0.05))
            value = 1 - ratio_of(results, key, "container")
            what = f"access-check overhead, {connections} conns, % req/s (noisy)"
            found.append((what, value * 100, "<= 5 %", value <= 0.05))
    return found


def main() -> None:
    args = parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (2 if args.quick else 3)
    levels = (16, 64) if args.quick else (1, 16, 64)
    pairs, pair_seconds = (4, 1) if args.quick else (6, 2)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        directory = Path(tmp)
        iris, cancer = iris_single_row(directory), cancer_batches(directory)
        rows = {iris.name: 1, cancer.name: cancer.rows_per_request}
        targets = build_targets(iris, cancer, args.workers, write_access_file(directory))
        scenarios = [(workload.name, level) for workload in (iris, cancer) for level in levels]
        print(f"Starting {len(targets)} servers with {args.workers} workers each...", flush=True)
        try:
            for target in targets.values():
                target.start(directory)
            for target in targets.values():
                target.wait_ready()
            for target in targets.values():  # warm-up
                run_wrk(target, 16, 1, directory)
            results: dict[tuple, list[Result]] = {}
            for round_index in range(rounds):
                for workload_name, connections in scenarios:
                    kinds = list(KINDS)
                    shift = round_index % len(kinds)
                    for kind in kinds[shift:] + kinds[:shift]:
                        target: Target = targets[workload_name, kind]
                        result = run_wrk(target, connections, seconds, directory)
                        results.setdefault((workload_name, connections, kind), []).append(result)
                print(
                    f"round {round_index + 1}/{rounds} done ({time.monotonic() - started:.0f} s)", flush=True
                )
            # The access check costs about a microsecond, far below this machine's run-to-run noise,
            # so it gets its own many short runs, alternating with and without, paired.
            plain, checked = targets[iris.name, "container"], targets[iris.name, ACCESS]
            for connections in ACCESS_CONNECTIONS:
                for pair in range(pairs):
                    order = (plain, checked) if pair % 2 == 0 else (checked, plain)
                    for target in order:
                        kind = ACCESS if target is checked else "container"
                        results.setdefault(("access", connections, kind), []).append(
                            run_wrk(target, connections, pair_seconds, directory)
                        )
            print(f"access pairs done ({time.monotonic() - started:.0f} s)", flush=True)
        finally:
            for target in targets.values():
                target.stop()
    print(
        f"\n{rounds} round(s) of {seconds:g} s per run; medians over rounds; ratios taken within a round.\n"
    )
    report(results, scenarios, rows)
    print(f"\nAccess check: {pairs} alternating pairs of {pair_seconds:g} s runs per connection count.")
    report(results, [("access", connections) for connections in ACCESS_CONNECTIONS], {"access": 1})
    print()
    for what, value, goal, met in checks(results, iris, cancer):
        print(f"{'PASS' if met else 'MISS'}  {what:<62} {value:8.2f}   target {goal}")
    print(f"\nTotal {time.monotonic() - started:.0f} s.")


if __name__ == "__main__":
    main()
