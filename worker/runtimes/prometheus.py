"""Endpoint traffic read from a Prometheus server (PROMETHEUS_URL) through its HTTP API's
`/api/v1/query_range`, for teams whose Prometheus already scrapes the serving processes.

Serving processes label every metric with `endpoint_name` and `revision` (SERVING_ENDPOINT and
SERVING_REVISION, set by the local runtime). Two range queries answer a `traffic` call: the
requests by status class and the latency buckets, each as `increase` over one step, summed by
revision; percentiles come from the buckets as Prometheus's `histogram_quantile` computes them.

    PrometheusReader("http://prometheus:9090").traffic("iris", start=..., end=..., step=60)
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime

from worker.runtimes.base import PermanentError, TransientError
from worker.runtimes.traffic import (
    NOT_TRAFFIC,
    RevisionTraffic,
    Traffic,
    TrafficPoint,
    check_window,
    from_epoch,
    quantile,
)

TIMEOUT_SECONDS = 10.0
_NOT_TRAFFIC = "|".join(sorted(NOT_TRAFFIC))


def _quote(value: str) -> str:
    return json.dumps(value)  # a PromQL string literal: double quotes, backslash escapes


class PrometheusReader:
    def __init__(self, url: str, *, timeout: float = TIMEOUT_SECONDS):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def traffic(self, endpoint: str, *, start: datetime, end: datetime, step: int) -> Traffic:
        check_window(start, end, step)
        selector = f'endpoint_name={_quote(endpoint)},route!~"{_NOT_TRAFFIC}"'
        counted = f"increase(serving_requests_total{{{selector}}}[{step}s])"
        requests = f'sum by (revision, class) (label_replace({counted}, "class", "$1", "status", "(.).*"))'
        timed = f"increase(serving_request_duration_seconds_bucket{{{selector}}}[{step}s])"
        buckets = f"sum by (revision, le) ({timed})"
        # Prometheus evaluates at each step's end: increase(...[step]) then covers the step before.
        first, last = start.timestamp() + step, end.timestamp()
        points: dict[str, dict[float, dict]] = {}
        for series in self.query_range(requests, first, last, step):
            revision = series["metric"].get("revision", "")
            kind = {"4": "client_errors", "5": "server_errors"}.get(series["metric"].get("class", ""), "ok")
            for at, value in series["values"]:
                counts = points.setdefault(revision, {}).setdefault(float(at) - step, {})
                counts[kind] = counts.get(kind, 0) + round(float(value))
        histograms: dict[str, dict[float, dict[float, float]]] = {}
        for series in self.query_range(buckets, first, last, step):
            revision = series["metric"].get("revision", "")
            le = series["metric"].get("le", "+Inf")
            bound = math.inf if le == "+Inf" else float(le)
            for at, value in series["values"]:
                by_bound = histograms.setdefault(revision, {}).setdefault(float(at) - step, {})
                by_bound[bound] = float(value)
        revisions = []
        for revision, by_time in sorted(points.items()):
            series_points = []
            for at, counts in sorted(by_time.items()):
                if not any(counts.values()):
                    continue
                p50, p95, p99 = _percentiles(histograms.get(revision, {}).get(at, {}))
                series_points.append(TrafficPoint(from_epoch(at), p50=p50, p95=p95, p99=p99, **counts))
            if series_points:
                revisions.append(RevisionTraffic(revision, tuple(series_points)))
        return Traffic(start, end, step, tuple(revisions), source=f"Prometheus at {self.url}")

    def query_range(self, query: str, start: float, end: float, step: int) -> list[dict]:
        """The matrix `query` gives from `start` to `end` (seconds since the epoch) every `step`."""
        form = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": f"{step}s"})
        request = urllib.request.Request(
            f"{self.url}/api/v1/query_range",
            data=form.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = _json_or_none(exc)
            detail = body.get("error") if isinstance(body, dict) else exc.reason
            if exc.code in (400, 422):  # a bad query or a range Prometheus cannot compute
                raise PermanentError(f"Prometheus at {self.url} refused the query: {detail}") from None
            raise TransientError(f"Prometheus at {self.url} answered {exc.code}: {detail}") from None
        except (OSError, ValueError) as exc:
            raise TransientError(f"Prometheus at {self.url} did not answer: {exc}") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            raise TransientError(f"Prometheus at {self.url} answered {str(body)[:200]}")
        data = body.get("data") or {}
        if data.get("resultType") != "matrix":
            raise PermanentError(
                f"Prometheus at {self.url} answered a {data.get('resultType')}, not a matrix"
            )
        return data.get("result") or []


def _json_or_none(exc: urllib.error.HTTPError):
    try:
        return json.load(exc)
    except (OSError, ValueError):
        return None


def _percentiles(by_bound: dict[float, float]) -> tuple[float | None, float | None, float | None]:
    """p50, p95 and p99 of cumulative buckets by upper bound (Prometheus's `le`)."""
    bounds = sorted(bound for bound in by_bound if bound != math.inf)
    if not bounds:
        return None, None, None
    counts, below = [], 0.0
    for bound in [*bounds, math.inf]:
        cumulative = by_bound.get(bound, below)
        counts.append(max(cumulative - below, 0.0))
        below = max(cumulative, below)
    found = [quantile(q, counts, tuple(bounds)) for q in (0.5, 0.95, 0.99)]
    return found[0], found[1], found[2]
