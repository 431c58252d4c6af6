"""Micro-batching on vs off: `python -m bench.serving.microbatch [--quick]`.

Starts the container twice per workload, with SERVING_MICROBATCH=off and =on, and loads one at a
time with wrk at 1, 16 and 64 connections, round after round, alternating which goes first, so
drift on this shared machine falls on both alike. Ratios (on / off) are taken within a round; the
median over rounds is reported. Workloads, one row per request:
  iris 1 row:   the iris LogisticRegression, named features (answered by the one-row kernel);
  forest 1 row: a 100-tree RandomForest on breast_cancer, {"inputs": [[30 values]]} (ONNX Runtime).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

from bench.serving.models import Workload, _write, iris_single_row
from bench.serving.runner import Result, Target, container, run_wrk, start_all

MODES = ("off", "on")
WORKLOADS = ("iris", "forest")


def forest_single_row(directory: Path) -> Workload:
    """A 100-tree RandomForest on breast_cancer; one row per request as {"inputs": [[...]]}."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    data = load_breast_cancer()
    features = [name.replace(" ", "_") for name in data.feature_names]
    model = RandomForestClassifier(n_estimators=100, random_state=0).fit(data.data, data.target)
    path, meta = _write(directory, "forest", model, features, {"0": "malignant", "1": "benign"})
    row = data.data[np.random.default_rng(0).integers(len(data.data))].round(4).tolist()
    return Workload("forest 1 row", path, meta, orjson.dumps({"inputs": [row]}), 1)


def levels(value: str) -> tuple[int, ...]:
    try:
        chosen = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("give connection counts like 1,16,64") from None
    if not chosen or min(chosen) < 1:
        raise argparse.ArgumentTypeError("give connection counts like 1,16,64")
    return chosen


def workloads(value: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in value.split(",") if part.strip())
    if not chosen or set(chosen) - set(WORKLOADS):
        raise argparse.ArgumentTypeError(f"choose among {', '.join(WORKLOADS)}")
    return chosen


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serving.microbatch", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="2 short rounds")
    parser.add_argument("--rounds", type=int, help="rounds of every scenario (default 5, quick 2)")
    parser.add_argument("--seconds", type=int, help="length of each wrk run (default 3, quick 2)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="per server")
    parser.add_argument(
        "--connections", type=levels, default=(1, 16, 64), help="comma-separated (default 1,16,64)"
    )
    parser.add_argument(
        "--only", type=workloads, default=WORKLOADS, help=f"comma-separated among {', '.join(WORKLOADS)}"
    )
    parser.add_argument("--detail", action="store_true", help="also print every round's figures")
    parser.add_argument(
        "--wait-us", type=int, default=0, help="SERVING_MICROBATCH_WAIT_US when on (default 0)"
    )
    return parser.parse_args()


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def batch_sizes(target: Target) -> tuple[float, float]:
    """(model calls, rows) from the server's serving_batch_rows histogram."""
    text = httpx.get(f"http://127.0.0.1:{target.port}/metrics", timeout=10).text

    def value(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))

    return value("serving_batch_rows_count"), value("serving_batch_rows_sum")


def report(results: dict, scenarios: list, calls: dict) -> None:
    print(
        f"{'scenario':<18}{'batching':<10}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'cpu us/req':>11}"
        f"{'rows/call':>10}{'on/off req/s':>14}{'(min-max)':>12}{'on/off p99':>12}{'fails':>7}"
    )
    for scenario in scenarios:
        off, on = results[scenario, "off"], results[scenario, "on"]
        for mode, runs in (("off", off), ("on", on)):
            rows_per_call = calls.get((scenario, mode))
            line = (
                f"{f'{scenario[0]} c={scenario[1]}':<18}{mode:<10}"
                f"{median([run.requests_per_second for run in runs]):>9.0f}"
                f"{median([run.p50_ms for run in runs]):>8.2f}{median([run.p99_ms for run in runs]):>8.2f}"
                f"{median([run.cpu_us_per_request for run in runs]):>11.1f}"
                f"{rows_per_call if rows_per_call is not None else float('nan'):>10.1f}"
            )
            if mode == "on":
                speeds = [a.requests_per_second / b.requests_per_second for a, b in zip(on, off, strict=True)]
                tail = median([a.p99_ms / b.p99_ms for a, b in zip(on, off, strict=True)])
                spread = f"{min(speeds):.2f}-{max(speeds):.2f}"
                line += f"{median(speeds):>13.2f}x{spread:>12}{tail:>11.2f}x"
            else:
                line += f"{'':>14}{'':>12}{'':>12}"
            print(line + f"{sum(run.failures for run in runs):>7}")


def main() -> None:
    args = parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    seconds = args.seconds or (2 if args.quick else 3)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-microbatch-") as tmp:
        directory = Path(tmp)
        builders = {"iris": iris_single_row, "forest": forest_single_row}
        loaded = [builders[name](directory) for name in args.only]
        targets: dict[tuple[str, str], Target] = {}
        for workload in loaded:
            for mode in MODES:
                target = container(workload, args.workers)
                target.env["SERVING_MICROBATCH"] = mode
                if mode == "on":
                    target.env["SERVING_MICROBATCH_WAIT_US"] = str(args.wait_us)
                target.name += f" microbatch {mode}"
                targets[workload.name, mode] = target
        scenarios = [(workload.name, level) for workload in loaded for level in args.connections]
        print(f"Starting {len(targets)} servers with {args.workers} workers each...", flush=True)
        results: dict[tuple, list[Result]] = {}
        calls: dict[tuple, float] = {}
        try:
            start_all(targets.values(), directory)
            for round_index in range(rounds):
                for scenario in scenarios:
                    order = MODES if (round_index + scenario[1]) % 2 == 0 else MODES[::-1]
                    for mode in order:
                        target = targets[scenario[0], mode]
                        before = batch_sizes(target)
                        result = run_wrk(target, scenario[1], seconds, directory)
                        after = batch_sizes(target)
                        results.setdefault((scenario, mode), []).append(result)
                        key = (scenario, mode, "totals")
                        totals = calls.get(key, (0.0, 0.0))
                        calls[key] = (totals[0] + after[0] - before[0], totals[1] + after[1] - before[1])
                print(
                    f"round {round_index + 1}/{rounds} done ({time.monotonic() - started:.0f} s)", flush=True
                )
        finally:
            for target in targets.values():
                target.stop()
    rows_per_call = {
        (scenario, mode): rows / count if count else float("nan")
        for (scenario, mode, _), (count, rows) in calls.items()
    }
    print(
        f"\n{rounds} round(s) of {seconds:g} s per run, {args.workers} workers per server, "
        f"SERVING_MICROBATCH_WAIT_US={args.wait_us} when on; "
        "medians over rounds; ratios taken within a round.\n"
        "rows/call: rows per model call over all runs (serving_batch_rows).\n"
    )
    report(results, scenarios, rows_per_call)
    if args.detail:
        print("\nEvery round, off | on: req/s, p99 ms")
        for scenario in scenarios:
            pairs = zip(results[scenario, "off"], results[scenario, "on"], strict=True)
            cells = [
                f"{a.requests_per_second:.0f} {a.p99_ms:.1f} | {b.requests_per_second:.0f} {b.p99_ms:.1f}"
                for a, b in pairs
            ]
            print(f"{f'{scenario[0]} c={scenario[1]}':<18}" + "   ".join(cells))
    print(f"\nTotal {time.monotonic() - started:.0f} s.")


if __name__ == "__main__":
    main()
