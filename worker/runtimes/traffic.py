"""An endpoint's traffic as the runtimes report it: requests by status class and latency
percentiles, per revision, in steps of a fixed length.

    traffic = runtime.traffic("iris", live, start=now - timedelta(hours=1), end=now, step=60)
    for revision in traffic.revisions:
        for point in revision.points:
            point.start, point.requests, point.error_rate, point.p99

A step as long as the window gives one point per revision: what a rollout guard reads
(`TrafficWindow.of`). The error rate counts server errors (5xx) only: a 401 is the caller's fault,
not the revision's. Latencies are in seconds; a percentile is None for a step with no request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

# The latency buckets the local scraper keeps (upper bounds in seconds; one more for +Inf): the
# serving process's own histogram buckets (serving.metrics.LATENCY_BOUNDS).
LATENCY_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PERCENTILES = (0.5, 0.95, 0.99)
MAX_POINTS = 11_000  # the most points a query may ask for (Prometheus's own limit per series)


@dataclass(frozen=True)
class TrafficPoint:
    """One step of one revision: requests answered in it by status class, and latency percentiles."""

    start: datetime  # UTC, the step's start
    ok: int = 0  # 1xx-3xx
    client_errors: int = 0  # 4xx
    server_errors: int = 0  # 5xx
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None

    @property
    def requests(self) -> int:
        return self.ok + self.client_errors + self.server_errors

    @property
    def error_rate(self) -> float | None:
        """The share of requests answered with a 5xx (None with no request)."""
        return self.server_errors / self.requests if self.requests else None


@dataclass(frozen=True)
class RevisionTraffic:
    revision: str
    points: tuple[TrafficPoint, ...]  # oldest first, only steps with requests


@dataclass(frozen=True)
class Traffic:
    """What `Runtime.traffic` returns: every revision that answered requests in [start, end)."""

    start: datetime
    end: datetime
    step: int  # seconds
    revisions: tuple[RevisionTraffic, ...] = ()
    source: str = ""  # where the figures come from, as the page says it

    def revision(self, name: str) -> RevisionTraffic | None:
        return next((revision for revision in self.revisions if revision.revision == name), None)


@dataclass(frozen=True)
class TrafficWindow:
    """One revision over a whole window: what a guard compares with its thresholds."""

    revision: str
    requests: int
    error_rate: float | None
    p99: float | None

    @classmethod
    def of(cls, traffic: Traffic, revision: str) -> TrafficWindow:
        """The window `traffic` covers, summed, for `revision` (ask with `step` = the window)."""
        found = traffic.revision(revision)
        points = found.points if found else ()
        requests = sum(point.requests for point in points)
        errors = sum(point.server_errors for point in points)
        p99 = max((point.p99 for point in points if point.p99 is not None), default=None)
        return cls(revision, requests, errors / requests if requests else None, p99)


def check_window(start: datetime, end: datetime, step: int) -> None:
    """ValueError unless [start, end) in steps of `step` seconds is a query a runtime can answer."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must carry a time zone")
    if end <= start:
        raise ValueError("end must come after start")
    if step < 60 or step % 60:
        raise ValueError("step must be a whole number of minutes")
    if (end - start).total_seconds() / step > MAX_POINTS:
        raise ValueError(f"more than {MAX_POINTS} steps: ask with a longer step")


def epoch_minute(moment: datetime) -> int:
    return math.floor(moment.timestamp() / 60)


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def quantile(q: float, counts: list[float] | tuple[float, ...], bounds=LATENCY_BOUNDS) -> float | None:
    """The q-quantile of a histogram (`counts` per bucket, the last one +Inf), as Prometheus's
    histogram_quantile estimates it: linear within the bucket it falls in; the highest finite
    bound when it falls in +Inf."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index >= len(bounds):
                return bounds[-1]
            low = bounds[index - 1] if index else 0.0
            return low + (bounds[index] - low) * (rank - seen) / count
        seen += count
    return bounds[-1]


@dataclass(frozen=True)
class TrafficSample:
    """A serving process's counters as one scrape read them (cumulative since `started`)."""

    endpoint: str
    revision: str
    started: float  # the process's start, seconds since the epoch
    ok: int
    client_errors: int
    server_errors: int
    buckets: tuple[int, ...]  # requests per latency bucket (LATENCY_BOUNDS, then +Inf)
    latency_sum: float


# Routes that are traffic: not health checks, nor a scraper reading /metrics.
NOT_TRAFFIC = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health"})


def parse_exposition(text: str, *, endpoint: str, revision: str) -> TrafficSample:
    """The traffic counters in a serving process's Prometheus text (serving.metrics.render)."""
    counts = {"ok": 0, "client_errors": 0, "server_errors": 0}
    cumulative: dict[str, dict[float, float]] = {}
    latency_sum = 0.0
    started = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, labels, value = _sample(line)
        if name == "serving_process_start_time_seconds":
            started = value
        elif labels.get("route") in NOT_TRAFFIC:
            continue
        elif name == "serving_requests_total":
            status = labels.get("status", "")
            kind = (
                "server_errors" if status.startswith("5") else "client_errors" if status[:1] == "4" else "ok"
            )
            counts[kind] += int(value)
        elif name == "serving_request_duration_seconds_bucket":
            bound = math.inf if labels["le"] == "+Inf" else float(labels["le"])
            cumulative.setdefault(labels.get("route", ""), {})[bound] = value
        elif name == "serving_request_duration_seconds_sum":
            latency_sum += value
    buckets = [0] * (len(LATENCY_BOUNDS) + 1)
    for by_bound in cumulative.values():
        below = 0.0
        for bound in sorted(by_bound):
            index = next((i for i, edge in enumerate(LATENCY_BOUNDS) if bound <= edge), len(LATENCY_BOUNDS))
            buckets[index] += int(by_bound[bound] - below)
            below = by_bound[bound]
    return TrafficSample(
        endpoint=endpoint,
        revision=revision,
        started=started,
        buckets=tuple(buckets),
        latency_sum=latency_sum,
        **counts,
    )


def _sample(line: str) -> tuple[str, dict[str, str], float]:
    """Name, labels and value of one exposition line (label values without escaped quotes)."""
    head, _, value = line.rpartition(" ")
    name, _, rest = head.partition("{")
    labels = {}
    for pair in rest.rstrip("}").split('",'):
        key, _, label = pair.partition('="')
        if key:
            labels[key.strip(",")] = label.rstrip('"')
    return name, labels, float(value)
