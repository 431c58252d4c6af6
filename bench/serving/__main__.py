"""Benchmark the serving container: `python -m bench.serving [--quick] [--only cancer,access]`.

Starts, on loopback and all at once (idle servers cost nothing), the container, the seed-style
FastAPI baseline and the raw-ASGI floor for each model, plus the container with an access file.
Then loads one at a time with wrk, round after round, rotating the order within each scenario so
drift (other load on the machine, thermal) falls on every target alike. Ratios are taken within a
round and the median over rounds is reported.

The access check costs well under a microsecond, far below what wrk runs on a shared machine can
resolve: two identical servers measured the same way (the "twin" rows, an A/A control) differ by
several percent. So its target is judged in-process, where the cost is measured to a tenth of a
microsecond: the real protocol and app, fed the bytes wrk sends, with and without the key header
and the access file (`runner.access_cost`), over the server CPU per request measured with wrk.
The wrk pairs and the A/A control are still printed, for what they are worth.

The identity scenario times, the same way and in the same run, a one-row request carrying an API
key (an api_key policy) and one carrying `Authorization: Bearer <JWT>` (an identity policy whose
JWKS a loopback server here publishes; RS256, the token verified once and then remembered, as a
caller repeating its token finds it). The figures: what the JWT check adds, as a share of the
request's CPU without any check (goal: at most 5 %), and the JWT request's CPU over the API key's.

The infer scenario sends the same 64-row batches to the Open Inference Protocol route as JSON
tensors and as binary ones (the binary tensor data extension, outputs in binary too), each to its
own container, in rotating order; the binary rows/s over the JSON rows/s of the same round is the
figure, median over rounds. Two models: iris (4 features: the fixed cost of a request weighs most)
and a scaled logistic regression on breast_cancer (30 features).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.serving.models import (
    Workload,
    cancer_batches,
    census_workloads,
    hgb_workloads,
    infer_batches,
    iris_single_row,
)
from bench.serving.runner import (
    AccessCost,
    IdentityCost,
    Result,
    Target,
    access_cost,
    container,
    identity_cost,
    run_wrk,
    start_all,
    uvicorn_app,
    write_access_file,
    write_identity_file,
)

KINDS = ("container", "baseline", "floor")
ACCESS = "container +access"
TWIN = "container twin"  # a second, identical container: the A/A control for the access pairs
KEY_ONLY, JWT = "container +key", "container +jwt"  # the identity scenario's pair
ACCESS_CONNECTIONS = (16, 64)
PARTS = ("iris", "cancer", "census", "hgb", "access", "identity", "infer")
INFER_KINDS = ("JSON", "binary")
INFER_MODELS = ("iris", "cancer")  # the keys of models.infer_batches
#: Models fitted on tables and histogram gradient boosting: rows/s against the baseline, one row and batches.
TABLE_GOAL = 20


def parts(value: str) -> set[str]:
    chosen = {part.strip() for part in value.split(",") if part.strip()}
    unknown = chosen - set(PARTS)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose among {', '.join(PARTS)}")
    return chosen


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round at 16 and 64 connections")
    parser.add_argument("--rounds", type=int, help="rounds of every scenario (default 3, quick 1)")
    parser.add_argument("--seconds", type=int, help="length of each wrk run (default 3, quick 2)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="per server")
    parser.add_argument(
        "--only",
        type=parts,
        default=set(PARTS),
        help=f"comma-separated scenarios to run, among {', '.join(PARTS)} (default: all)",
    )
    return parser.parse_args()


def build_targets(
    workloads: list[Workload],
    iris: Workload,
    workers: int,
    access_file: Path | None,
    identity: IdentitySetup | None = None,
) -> dict:
    targets = {}
    for workload in workloads:
        batch_path = "/predict" if workload.rows_per_request == 1 else "/predict/batch"
        targets[workload.name, "container"] = container(workload, workers)
        targets[workload.name, "baseline"] = uvicorn_app(
            f"baseline {workload.name}", "bench.serving.baseline:app", workload, workers, batch_path
        )
        targets[workload.name, "floor"] = uvicorn_app(
            f"floor {workload.name}", "bench.serving.floor:app", workload, workers, "/predict"
        )
    if access_file is not None:
        targets.setdefault((iris.name, "container"), container(iris, workers))
        targets[iris.name, TWIN] = container(iris, workers)
        targets[iris.name, TWIN].name += " twin"
        targets[iris.name, ACCESS] = container(iris, workers, access_file)
    if identity is not None:
        targets.setdefault((iris.name, "container"), container(iris, workers))
        targets[iris.name, KEY_ONLY] = container(iris, workers, identity.key_file)
        targets[iris.name, JWT] = container(iris, workers, identity.identity_file, bearer=identity.token)
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
        for kind in (*KINDS, TWIN, ACCESS, KEY_ONLY, JWT):
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


def report_infer(results: dict, levels: tuple, models: list[str]) -> None:
    print(f"{'scenario':<28}{'tensors':<10}{'req/s':>9}{'rows/s':>10}{'p50 ms':>8}{'p99 ms':>8}", end="")
    print(f"{'x JSON':>9}{'cpu us/row':>11}{'fails':>7}")
    for model in models:
        for connections in levels:
            json_runs = results[("infer", model, connections, "JSON")]
            for kind in INFER_KINDS:
                runs = results[("infer", model, connections, kind)]
                rps = median([run.requests_per_second for run in runs])
                pairs = zip(runs, json_runs, strict=True)
                ratio = median([a.requests_per_second / b.requests_per_second for a, b in pairs])
                p50, p99 = median([run.p50_ms for run in runs]), median([run.p99_ms for run in runs])
                print(
                    f"{f'infer {model} 64 rows c={connections}':<28}{kind:<10}{rps:>9.0f}{rps * 64:>10.0f}"
                    f"{p50:>8.2f}{p99:>8.2f}"
                    f"{times(ratio):>9}{median([run.cpu_us_per_request for run in runs]) / 64:>11.2f}"
                    f"{sum(run.failures for run in runs):>7}"
                )


def spread(values: list[float]) -> str:
    """The interquartile range of per-pair differences, in %: how far apart single pairs fall."""
    if len(values) < 2:
        return ""
    low, _, high = statistics.quantiles(values, n=4)
    return f" [IQR {low * 100:+.0f}..{high * 100:+.0f}]"


def checks(
    results: dict, iris: Workload, cancer: Workload, cost: AccessCost | None, tables: list[Workload]
) -> list[tuple[str, float, str, bool | None]]:
    """The targets: (what, measured, goal, met); met is None for figures shown for information."""
    found = []
    for workload in tables:
        for connections in (1, 16, 64):
            key = (workload.name, connections, "container")
            if key in results:
                value = ratio_of(results, key, "baseline")
                what = f"{workload.name}, {connections} connections, rows/s vs baseline"
                found.append((what, value, f">= {TABLE_GOAL}x", value >= TABLE_GOAL))
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
            # Steadier than req/s when other processes take CPU: short requests lose more to them.
            pairs = zip(results[key], results[cancer.name, connections, "baseline"], strict=True)
            value = median([base.cpu_us_per_request / mine.cpu_us_per_request for mine, base in pairs])
            found.append(
                (
                    f"64-row batches, {connections} connections, baseline server CPU per row over ours",
                    value,
                    "",
                    None,
                )
            )
    for model in INFER_MODELS:
        for connections in (1, 16, 64):
            runs = [results.get(("infer", model, connections, kind), []) for kind in INFER_KINDS]
            if runs[0] and len(runs[0]) == len(runs[1]):
                value = median(
                    [b.requests_per_second / j.requests_per_second for j, b in zip(*runs, strict=True)]
                )
                what = f"64-row infer batches ({model}), {connections} connections, binary rows/s vs JSON"
                found.append((what, value, ">= 2x", value >= 2))
    for connections in ACCESS_CONNECTIONS:
        key = ("access", connections, ACCESS)
        if key not in results:
            continue
        plain_runs = results["access", connections, "container"]
        if cost is not None:
            value = cost.total_us / median([run.cpu_us_per_request for run in plain_runs])
            what = f"access check, {connections} conns, % server CPU/request (in-process)"
            found.append((what, value * 100, "<= 5 %", value <= 0.05))
        for kind, label in ((ACCESS, "access check"), (TWIN, "A/A control, no check")):
            pairs = list(zip(results["access", connections, kind], plain_runs, strict=True))
            cpu = [other.cpu_us_per_request / plain.cpu_us_per_request - 1 for other, plain in pairs]
            rps = [1 - other.requests_per_second / plain.requests_per_second for other, plain in pairs]
            what = f"{label}, {connections} conns, wrk pairs, % CPU/request"
            found.append((what + spread(cpu), median(cpu) * 100, "", None))
            what = f"{label}, {connections} conns, wrk pairs, % req/s"
            found.append((what + spread(rps), median(rps) * 100, "", None))
    return found


@dataclass(frozen=True)
class IdentitySetup:
    """The identity scenario's policies: API keys, and bearer tokens from a loopback issuer."""

    key_file: Path
    identity_file: Path
    token: str


def identity_setup(stack: contextlib.ExitStack, directory: Path) -> IdentitySetup:
    """A token issuer (RSA key, JWKS on loopback) for the run, and the two access files."""
    from tests.fixtures.jwt_issuer import Issuer

    issuer = stack.enter_context(Issuer())
    return IdentitySetup(
        write_access_file(directory, "api_key"),
        write_identity_file(directory, issuer.policy()),
        issuer.token(exp=int(time.time()) + 6 * 3600),
    )


def identity_checks(results: dict, cost: IdentityCost, rounds: int) -> list[tuple]:
    print(
        f"\nIdentity in-process ({rounds} rotations of 400 one-row requests, thread CPU time): a request "
        f"costs {cost.plain_us:.2f} us with no check; an API key adds {cost.key_us:.2f} us, a verified "
        f"JWT {cost.jwt_us:.2f} us (+-{cost.spread_us:.2f})."
    )
    found = []
    for connections in ACCESS_CONNECTIONS:
        plain_runs = results.get(("identity", connections, "container"), [])
        if plain_runs:
            share = cost.jwt_us / median([run.cpu_us_per_request for run in plain_runs])
            what = f"identity check, {connections} conns, % server CPU/request (in-process)"
            found.append((what, share * 100, "<= 5 %", share <= 0.05))
            jwt_runs, key_runs = (
                results["identity", connections, JWT],
                results["identity", connections, KEY_ONLY],
            )
            cpu = [
                jwt.cpu_us_per_request / key.cpu_us_per_request - 1
                for jwt, key in zip(jwt_runs, key_runs, strict=True)
            ]
            what = f"JWT over API key, {connections} conns, wrk pairs, % CPU/request"
            found.append((what + spread(cpu), median(cpu) * 100, "", None))
    share = cost.jwt_us / cost.plain_us
    found.append(("identity check, % of in-process request CPU (no socket work)", share * 100, "", None))
    found.append(("one-row request CPU, JWT over API key (in-process)", cost.jwt_over_key, "", None))
    return found


def main() -> None:
    args = parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (2 if args.quick else 3)
    levels = (16, 64) if args.quick else (1, 16, 64)
    pairs, pair_seconds = (4, 1) if args.quick else (6, 2)
    cost_rounds = 60 if args.quick else 150
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        identity = identity_setup(stack, directory) if "identity" in args.only else None
        iris, cancer = iris_single_row(directory), cancer_batches(directory)
        tables = [
            *(census_workloads(directory) if "census" in args.only else []),
            *(hgb_workloads(directory) if "hgb" in args.only else []),
        ]
        every = [iris, cancer, *tables]
        rows = {workload.name: workload.rows_per_request for workload in every}
        loaded = [workload for workload in every if workload.name.split()[0] in args.only]
        access_file = write_access_file(directory) if "access" in args.only else None
        targets = build_targets(loaded, iris, args.workers, access_file, identity)
        if "infer" in args.only:
            for model, pair in infer_batches(directory).items():
                for kind, workload in zip(INFER_KINDS, pair, strict=True):
                    targets["infer", model, kind] = container(workload, args.workers)
        scenarios = [(workload.name, level) for workload in loaded for level in levels]
        print(f"Starting {len(targets)} servers with {args.workers} workers each...", flush=True)
        try:
            start_all(targets.values(), directory)
            results: dict[tuple, list[Result]] = {}
            for round_index in range(rounds):
                for workload_name, connections in scenarios:
                    kinds = list(KINDS)
                    shift = round_index % len(kinds)
                    for kind in kinds[shift:] + kinds[:shift]:
                        target: Target = targets[workload_name, kind]
                        result = run_wrk(target, connections, seconds, directory)
                        results.setdefault((workload_name, connections, kind), []).append(result)
                for model in INFER_MODELS if "infer" in args.only else ():
                    for connections in levels:
                        shift = round_index % len(INFER_KINDS)
                        for kind in INFER_KINDS[shift:] + INFER_KINDS[:shift]:
                            result = run_wrk(targets["infer", model, kind], connections, seconds, directory)
                            results.setdefault(("infer", model, connections, kind), []).append(result)
                print(
                    f"round {round_index + 1}/{rounds} done ({time.monotonic() - started:.0f} s)", flush=True
                )
            # Short runs of the plain container, its twin and the checked one, in rotating order;
            # the same for the identity scenario: no check, an API key, a JWT.
            for scenario, kinds, wanted in (
                ("access", ["container", TWIN, ACCESS], access_file is not None),
                ("identity", ["container", KEY_ONLY, JWT], identity is not None),
            ):
                for connections in ACCESS_CONNECTIONS if wanted else ():
                    for pair in range(pairs):
                        shift = pair % len(kinds)
                        for kind in kinds[shift:] + kinds[:shift]:
                            results.setdefault((scenario, connections, kind), []).append(
                                run_wrk(targets[iris.name, kind], connections, pair_seconds, directory)
                            )
                if wanted:
                    print(f"{scenario} pairs done ({time.monotonic() - started:.0f} s)", flush=True)
        finally:
            for target in targets.values():
                target.stop()
        cost = access_cost(iris, access_file, directory, cost_rounds) if access_file else None
        found_cost = (
            identity_cost(
                iris, identity.key_file, identity.identity_file, identity.token, directory, cost_rounds
            )
            if identity
            else None
        )
    print(
        f"\n{rounds} round(s) of {seconds:g} s per run; medians over rounds; ratios taken within a round.\n"
    )
    if scenarios:
        report(results, scenarios, rows)
    if "infer" in args.only:
        print("\nThe same 64-row batches to /v2/models/<model>/infer, as JSON and as binary tensors.")
        report_infer(results, levels, list(INFER_MODELS))
    if cost is not None:
        print(f"\nAccess check: {pairs} rotations of {pair_seconds:g} s runs per connection count.")
        report(results, [("access", connections) for connections in ACCESS_CONNECTIONS], {"access": 1})
        print(
            f"\nAccess check in-process ({cost_rounds} rotations of 400 requests, thread CPU time): "
            f"a request costs {cost.plain_us:.2f} us without it; the key header adds "
            f"{cost.header_us:.2f} us, the check {cost.check_us:.2f} us; together {cost.total_us:.2f} us "
            f"(+-{cost.spread_us:.2f})."
        )
    found = checks(results, iris, cancer, cost, tables)
    if found_cost is not None:
        print(f"\nIdentity: {pairs} rotations of {pair_seconds:g} s runs per connection count.")
        report(results, [("identity", connections) for connections in ACCESS_CONNECTIONS], {"identity": 1})
        found += identity_checks(results, found_cost, cost_rounds)
    print()
    for what, value, goal, met in found:
        status = "INFO" if met is None else "PASS" if met else "MISS"
        print(f"{status}  {what:<72} {value:8.2f}   {'target ' + goal if goal else ''}")
    print(f"\nTotal {time.monotonic() - started:.0f} s.")


if __name__ == "__main__":
    main()
