"""The guard of a progressive deploy: is the new revision healthy over the window?

Pure: it reads one `TrafficWindow` (the new revision's requests, 5xx share and p99 over the
window, as `Runtime.traffic` reports them) and the deploy's thresholds, and says so in words the
journal and the audit log keep.

    verdict = judge(TrafficWindow.of(traffic, "iris-d8"), Guard(5.0, 1000, 50), window_seconds=300)
    verdict.healthy   # True, False, or None: too few requests to judge
    verdict.reason    # "5xx on 12.0% of 84 requests over the last 5 minutes, above 5%"
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.runtimes.traffic import TrafficWindow


@dataclass(frozen=True)
class Guard:
    max_error_percent: float  # the most of its requests the new revision may answer with a 5xx
    max_p99_ms: int  # the slowest its 99th percentile may be
    min_requests: int  # how many requests the window must hold before it is judged at all


@dataclass(frozen=True)
class Verdict:
    healthy: bool | None  # None: fewer requests than the guard's minimum, nothing is judged
    reason: str


def judge(window: TrafficWindow, guard: Guard, *, window_seconds: int) -> Verdict:
    """What the guard says of the new revision over the window."""
    over = f"over the last {_duration(window_seconds)}"
    requests = window.requests
    if requests < max(guard.min_requests, 1):
        return Verdict(
            None, f"{requests} request{'s' * (requests != 1)} {over}: {guard.min_requests} needed to judge"
        )
    problems = []
    error_percent = (window.error_rate or 0.0) * 100
    if error_percent > guard.max_error_percent:
        problems.append(
            f"5xx on {error_percent:.1f}% of {requests} requests {over}, above {guard.max_error_percent:g}%"
        )
    p99_ms = window.p99 * 1000 if window.p99 is not None else None
    if p99_ms is not None and p99_ms > guard.max_p99_ms:
        problems.append(f"p99 latency {p99_ms:.0f} ms {over}, above {guard.max_p99_ms} ms")
    if problems:
        return Verdict(False, "; ".join(problems))
    p99 = f", p99 {p99_ms:.0f} ms" if p99_ms is not None else ""
    return Verdict(True, f"{requests} requests {over}: 5xx on {error_percent:.1f}%{p99}")


def _duration(seconds: int) -> str:
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute{'s' * (minutes != 1)}" if minutes != 1 else "minute"
    return f"{seconds} s"
