"""Prometheus metrics summed over all workers, kept in one shared memory block.

The master maps an anonymous shared block before forking; each worker writes only its own row
(so no locks), and whichever worker answers /metrics sums the rows. A restarted worker takes over
its predecessor's row, so counters never go backwards while the process lives. Recording a request
costs a few array stores, far cheaper than prometheus_client's multiprocess files.
"""

from __future__ import annotations

import bisect
import math
import mmap
import time

import numpy as np

ROUTES = (
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/v1/model",
    "/predict",
    "/v2/health",
    "/v2/models/{name}",
    "/v2/models/{name}/infer",
    "other",
)
STATUSES = (200, 400, 401, 403, 404, 405, 408, 413, 415, 422, 500, 503)
LATENCY_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 10000)
ROUTE_INDEX = {route: index for index, route in enumerate(ROUTES)}
OTHER_ROUTE = ROUTE_INDEX["other"]
STATUS_INDEX = {status: index for index, status in enumerate(STATUSES)}
OTHER_STATUS = len(STATUSES)  # counted as status="other"

# Row layout: request counts, then per-route latency buckets (+Inf last) and sums, rows, batch sizes.
_REQUESTS = 0
_LATENCY = _REQUESTS + len(ROUTES) * (len(STATUSES) + 1)
_LATENCY_WIDTH = len(LATENCY_BOUNDS) + 2  # buckets, +Inf, sum
_ROWS = _LATENCY + len(ROUTES) * _LATENCY_WIDTH
_BATCH = _ROWS + 1
_WIDTH = _BATCH + len(BATCH_BOUNDS) + 2


class SharedMetrics:
    """The shared block: `slots` rows of float64 counters, then each worker's open connections, then
    the access policy's generation (bumped by the supervisor when the access file is to be re-read)."""

    def __init__(self, slots: int, *, labels: dict[str, str] | None = None):
        # Read by `render` only: when the process started (a scraper tells a restart from a counter
        # that went back) and labels naming what it serves (a Prometheus server's series per revision).
        self.started = time.time()
        self.labels = "".join(f',{name}="{_escape(value)}"' for name, value in (labels or {}).items())
        self.block = mmap.mmap(-1, (slots * (_WIDTH + 1) + 1) * 8)
        values = np.frombuffer(self.block, dtype=np.float64)
        self.table = values[: slots * _WIDTH].reshape(slots, _WIDTH)
        doubles = memoryview(self.block).cast("d")
        self.connection_gauges = doubles[slots * _WIDTH : slots * (_WIDTH + 1)]
        self.access_generation = doubles[slots * (_WIDTH + 1) :]
        for slot in range(slots):
            self.connection_gauges[slot] = math.inf  # not accepting (yet)

    def recorder(self, slot: int) -> Recorder:
        # A memoryview of doubles: item updates cost a fraction of NumPy scalar indexing.
        return Recorder(memoryview(self.block).cast("d")[slot * _WIDTH : (slot + 1) * _WIDTH])


class Recorder:
    """One worker's writer into its own row."""

    def __init__(self, row: memoryview):
        self.row = row

    def status(self, route: int, status: int) -> None:
        self.row[_REQUESTS + route * (len(STATUSES) + 1) + STATUS_INDEX.get(status, OTHER_STATUS)] += 1

    def request(self, route: int, status: int, seconds: float) -> None:
        row = self.row
        row[_REQUESTS + route * (len(STATUSES) + 1) + STATUS_INDEX.get(status, OTHER_STATUS)] += 1
        base = _LATENCY + route * _LATENCY_WIDTH
        row[base + bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
        row[base + _LATENCY_WIDTH - 1] += seconds

    def rows(self, count: int) -> None:
        row = self.row
        row[_ROWS] += count
        row[_BATCH + bisect.bisect_left(BATCH_BOUNDS, count)] += 1
        row[_BATCH + len(BATCH_BOUNDS) + 1] += count


def _number(value) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _histogram(lines: list[str], name: str, labels: str, bounds, counts: np.ndarray, total: float) -> None:
    cumulative = 0.0
    for bound, count in zip(bounds, counts, strict=False):
        cumulative += count
        lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {_number(cumulative)}')
    cumulative += counts[len(bounds)]
    lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {_number(cumulative)}')
    lines.append(f"{name}_sum{{{labels}}} {_number(total)}")
    lines.append(f"{name}_count{{{labels}}} {_number(cumulative)}")


def render(shared: SharedMetrics, model_name: str, model_version, sha256: str, backend: str) -> bytes:
    """The Prometheus text exposition of the summed rows."""
    totals = shared.table.sum(axis=0)
    model = f'model="{_escape(model_name)}",model_version="{_escape(str(model_version))}"{shared.labels}'
    lines = [
        "# HELP serving_process_start_time_seconds When this serving process started (Unix time).",
        "# TYPE serving_process_start_time_seconds gauge",
        f"serving_process_start_time_seconds{{{model}}} {_number(shared.started)}",
        "# HELP serving_model_info The model this server answers with.",
        "# TYPE serving_model_info gauge",
        f'serving_model_info{{{model},sha256="{sha256}",backend="{_escape(backend)}"}} 1',
        "# HELP serving_requests_total HTTP requests answered, by route and status.",
        "# TYPE serving_requests_total counter",
    ]
    statuses = [str(status) for status in STATUSES] + ["other"]
    for route_index, route in enumerate(ROUTES):
        base = _REQUESTS + route_index * len(statuses)
        for status_index, status in enumerate(statuses):
            count = totals[base + status_index]
            if count:
                lines.append(
                    f'serving_requests_total{{{model},route="{route}",status="{status}"}} {_number(count)}'
                )
    lines += [
        "# HELP serving_request_duration_seconds Time from request start to response, by route.",
        "# TYPE serving_request_duration_seconds histogram",
    ]
    for route_index, route in enumerate(ROUTES):
        base = _LATENCY + route_index * _LATENCY_WIDTH
        counts = totals[base : base + _LATENCY_WIDTH - 1]
        if counts.any():
            labels = f'{model},route="{route}"'
            _histogram(
                lines,
                "serving_request_duration_seconds",
                labels,
                LATENCY_BOUNDS,
                counts,
                totals[base + _LATENCY_WIDTH - 1],
            )
    open_connections = sum(value for value in shared.connection_gauges if value != math.inf)
    lines += [
        "# HELP serving_open_connections Client connections open now, over all workers.",
        "# TYPE serving_open_connections gauge",
        f"serving_open_connections{{{model}}} {_number(open_connections)}",
        "# HELP serving_rows_predicted_total Rows the model predicted.",
        "# TYPE serving_rows_predicted_total counter",
        f"serving_rows_predicted_total{{{model}}} {_number(totals[_ROWS])}",
        "# HELP serving_batch_rows Rows per model call (one request, or micro-batched one-row requests).",
        "# TYPE serving_batch_rows histogram",
    ]
    _histogram(
        lines,
        "serving_batch_rows",
        model,
        BATCH_BOUNDS,
        totals[_BATCH : _BATCH + len(BATCH_BOUNDS) + 1],
        totals[_BATCH + len(BATCH_BOUNDS) + 1],
    )
    return ("\n".join(lines) + "\n").encode()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
