"""What the sandbox costs an upload: `python -m bench.upload [--rounds N]`.

Inspects the iris demo model (a skops file: listing, loading, schema and prediction checks, ONNX
conversion and its check) three ways, in one run:
- in process: `inspect_artifact` called directly, as the web process did before the sandbox (the
  baseline; its imports already paid);
- sandboxed: the same job through a warm sandbox server, as every upload now runs it;
- first sandboxed: the first job after the server was stopped, which pays its start-up.
Prints medians and the sandbox's cost over the baseline, in seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--cold-rounds", type=int, default=3)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("VAR_DIR", tempfile.mkdtemp(prefix="bench-upload-"))
    import django

    django.setup()
    from endpoints.artifacts import info_from_job, inspect_artifact
    from endpoints.demo import iris_skops_bytes
    from endpoints.sandbox import client

    data = iris_skops_bytes()
    job = {"artifact": "artifact.skops", "format": "skops", "schema": None, "max_expanded_bytes": 1 << 31}

    def in_process() -> None:
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "artifact.skops"
            path.write_bytes(data)
            inspect_artifact(path, "skops", trust_code=False)

    def sandboxed() -> None:
        with client.workspace() as folder:
            (folder / "artifact.skops").write_bytes(data)
            info = info_from_job(folder, client.run(folder, job))
            assert info.onnx is not None

    def timed(fn) -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    in_process()  # its imports, once, as a long-running web process has them
    cold = []
    for _ in range(args.cold_rounds):
        client.stop()
        cold.append(timed(sandboxed))
    baseline, sandbox = [], []
    for _ in range(args.rounds):  # interleaved, so both see the same machine
        baseline.append(timed(in_process))
        sandbox.append(timed(sandboxed))
    client.stop()

    base, boxed, first = (statistics.median(samples) for samples in (baseline, sandbox, cold))
    print(f"iris inspection, medians of {args.rounds} rounds ({args.cold_rounds} for the first):")
    print(f"  in process (baseline)       {base * 1000:8.1f} ms")
    extra = f"+{(boxed - base) * 1000:.1f} ms, {boxed / base:.2f}x"
    print(f"  sandboxed, warm server      {boxed * 1000:8.1f} ms   {extra}")
    print(f"  sandboxed, server starting  {first * 1000:8.1f} ms   +{(first - base) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
