"""Read a Cloud Run service's traffic from Cloud Monitoring (`projects.timeSeries.list`), for the
charts and for anything that judges a revision by its error rate and latency.

Cloud Run writes two metrics for every revision (resource type `cloud_run_revision`):
`run.googleapis.com/request_count` (DELTA, INT64, labelled `response_code_class`: 2xx, 4xx, ...)
and `run.googleapis.com/request_latencies` (DELTA, DISTRIBUTION, milliseconds). A `traffic` call
lists each once, aligned into steps as Google documents: `ALIGN_DELTA` over `alignment_period` =
the step, then `REDUCE_SUM` across the service's series, grouped by revision (and, for the counts,
by status class). The latency percentiles come from the summed distribution's buckets, estimated
within the bucket as for the local runtime's histograms:

    metric.type = "run.googleapis.com/request_count" AND resource.type = "cloud_run_revision"
    AND resource.labels.service_name = "iris-prod" AND resource.labels.location = "us-central1"
"""

from __future__ import annotations

from datetime import datetime

from worker.runtimes.gcp import run
from worker.runtimes.gcp.clients import Context
from worker.runtimes.resources import DeploymentResources
from worker.runtimes.traffic import RevisionTraffic, Traffic, TrafficPoint, from_epoch, quantile

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
REVISION = "resource.labels.revision_name"
CODE_CLASS = "metric.labels.response_code_class"
KINDS = {"4xx": "client_errors", "5xx": "server_errors"}  # the rest (1xx-3xx) answered


def quoted(text: str) -> str:
    """`text` as a string of the Monitoring filter language."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def service_filter(metric: str, service: str, region: str | None) -> str:
    clauses = [
        f"metric.type = {quoted(metric)}",
        'resource.type = "cloud_run_revision"',
        f"resource.labels.service_name = {quoted(service)}",
    ]
    if region:
        clauses.append(f"resource.labels.location = {quoted(region)}")
    return " AND ".join(clauses)


def region_of(live: DeploymentResources | None) -> str | None:
    """The region in the live service's name (projects/p/locations/<region>/services/s)."""
    parts = (live or {}).get("service", "").split("/")
    return parts[3] if len(parts) > 3 and parts[2] == "locations" else None


def bucket_bounds(options) -> list[float]:
    """The upper bounds of a Distribution's finite buckets (google.api.Distribution.BucketOptions);
    bucket 0 is the underflow, the last the overflow."""
    kind = options.WhichOneof("options")  # a plain protobuf message, not proto-plus
    if kind == "exponential_buckets":
        spec = options.exponential_buckets
        return [spec.scale * spec.growth_factor**index for index in range(spec.num_finite_buckets + 1)]
    if kind == "linear_buckets":
        spec = options.linear_buckets
        return [spec.offset + spec.width * index for index in range(spec.num_finite_buckets + 1)]
    if kind == "explicit_buckets":
        return list(options.explicit_buckets.bounds)
    return []


def percentiles(distribution) -> tuple[float | None, float | None, float | None]:
    """p50, p95 and p99 of a latency distribution in milliseconds, as seconds."""
    bounds = bucket_bounds(distribution.bucket_options)
    if not bounds or not distribution.count:
        return None, None, None
    counts = list(distribution.bucket_counts)[: len(bounds) + 1]
    counts += [0] * (len(bounds) + 1 - len(counts))
    found = [quantile(q, counts, tuple(bounds)) for q in (0.5, 0.95, 0.99)]
    return tuple(None if value is None else value / 1000 for value in found)  # type: ignore[return-value]


def traffic(
    ctx: Context,
    endpoint: str,
    live: DeploymentResources | None,
    *,
    start: datetime,
    end: datetime,
    step: int,
) -> Traffic:
    """Each revision's requests by status class and latency percentiles in [start, end)."""
    from google.cloud import monitoring_v3

    service = run.service_id(endpoint)
    region = region_of(live)
    interval = monitoring_v3.TimeInterval(start_time=start, end_time=end)

    def series(metric: str, group_by: list[str], what: str):
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{ctx.cfg.project}",
            filter=service_filter(metric, service, region),
            interval=interval,
            aggregation=monitoring_v3.Aggregation(
                alignment_period={"seconds": step},
                per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_DELTA,
                cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
                group_by_fields=group_by,
            ),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        pager = ctx.call(ctx.clients.monitoring().list_time_series, request=request, what=what)
        return [found for page in pager.pages for found in page.time_series]

    # Points are keyed by the start of their step: an aligned point's interval ends with its period.
    counts: dict[str, dict[float, dict[str, int]]] = {}
    for found in series(REQUEST_COUNT, [REVISION, CODE_CLASS], f"Read the request counts of {service}"):
        revision = found.resource.labels.get("revision_name", "")
        kind = KINDS.get(found.metric.labels.get("response_code_class", ""), "ok")
        for point in found.points:
            at = point.interval.end_time.timestamp() - step
            by_kind = counts.setdefault(revision, {}).setdefault(at, {})
            by_kind[kind] = by_kind.get(kind, 0) + int(point.value.int64_value)
    latencies: dict[str, dict[float, tuple]] = {}
    for found in series(REQUEST_LATENCIES, [REVISION], f"Read the request latencies of {service}"):
        revision = found.resource.labels.get("revision_name", "")
        for point in found.points:
            at = point.interval.end_time.timestamp() - step
            latencies.setdefault(revision, {})[at] = percentiles(point.value.distribution_value)
    revisions = []
    for revision, by_time in sorted(counts.items()):
        points = []
        for at, by_kind in sorted(by_time.items()):
            if not any(by_kind.values()):
                continue
            p50, p95, p99 = latencies.get(revision, {}).get(at, (None, None, None))
            points.append(TrafficPoint(from_epoch(at), p50=p50, p95=p95, p99=p99, **by_kind))
        if points:
            revisions.append(RevisionTraffic(revision, tuple(points)))
    return Traffic(start, end, step, tuple(revisions), source="Cloud Monitoring")
