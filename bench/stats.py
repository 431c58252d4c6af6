"""Small helpers shared by the benchmarks."""

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], *, repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def table(rows: list[tuple[str, float, float | None]]) -> None:
    """Print (label, median seconds, ratio of the first row to this one) rows, aligned."""
    width = max(len(label) for label, _, _ in rows)
    for label, seconds, ratio in rows:
        tail = f"  first row is {ratio:6.2f}x this" if ratio is not None else ""
        print(f"{label:<{width}}  {ms(seconds)}{tail}")
