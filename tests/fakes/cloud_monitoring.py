"""A fake Cloud Monitoring API v3 (`google.monitoring.v3.MetricService`) over gRPC: `ListTimeSeries`.

It holds the points Cloud Run writes for its revisions (tests call `write_requests` and
`write_latencies`, as Cloud Run would once a minute): `run.googleapis.com/request_count` (DELTA,
INT64, labelled `response_code` and `response_code_class`) and `run.googleapis.com/request_latencies`
(DELTA, DISTRIBUTION in milliseconds, exponential buckets), each on a `cloud_run_revision` resource.

`timeSeries.list` is answered as Google documents it:
- `name` is `projects/<id>`; another project is PERMISSION_DENIED;
- the filter names exactly one `metric.type`; the subset read is `<field> = "<value>"` joined by
  AND, over `metric.type`, `resource.type`, `resource.labels.<key>` and `metric.labels.<key>`;
  anything else is INVALID_ARGUMENT, as a filter Google cannot parse;
- `interval.end_time` is required, and a `start_time` after it is refused;
- an aligner other than ALIGN_NONE needs an `alignment_period` of at least 60 seconds, and a
  cross-series reducer needs an aligner; alignment periods end at `end_time` and step back from
  it; ALIGN_DELTA sums a period's deltas (INT64) or merges its distributions;
- REDUCE_SUM adds the aligned series that share the `group_by_fields` values, keeping only those
  labels; REDUCE_NONE keeps every series;
- points come newest first, a series' points all in one page (`page_size` counts series).

Other aligners and reducers are refused by name: the runtime uses none of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
from google.api import distribution_pb2
from google.cloud.monitoring_v3 import (
    Aggregation,
    ListTimeSeriesRequest,
    ListTimeSeriesResponse,
    Point,
    TimeSeries,
    TypedValue,
)

from tests.fakes.grpc_server import FakeError, GrpcFake, invalid, rpc

SERVICE = "google.monitoring.v3.MetricService"
REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
#: Cloud Run's latency buckets as this fake writes them: exponential, in milliseconds.
LATENCY_BUCKETS = distribution_pb2.Distribution.BucketOptions(
    exponential_buckets=distribution_pb2.Distribution.BucketOptions.Exponential(
        num_finite_buckets=60, growth_factor=1.25, scale=0.25
    )
)
SAMPLE_SECONDS = 60
CLAUSE = re.compile(r'^(?P<field>[a-z_.]+)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"$')
FIELD = re.compile(r"^(metric\.type|resource\.type|(resource|metric)\.labels\.[a-z_]+)$")
MAX_PAGE = 100_000


@dataclass
class _Raw:
    metric_type: str
    resource: dict[str, str]
    labels: dict[str, str]
    start: float
    end: float
    value: int | distribution_pb2.Distribution


def _parse_filter(text: str) -> dict[str, str]:
    clauses: dict[str, str] = {}
    for part in text.split(" AND "):
        match = CLAUSE.match(part.strip())
        if not match or not FIELD.match(match["field"]):
            raise invalid(f"Could not parse filter {text!r}: unexpected {part.strip()!r}.")
        clauses[match["field"]] = match["value"].replace('\\"', '"').replace("\\\\", "\\")
    if "metric.type" not in clauses:
        raise invalid("The filter must name exactly one metric type (metric.type = ...).")
    return clauses


def _field(raw: _Raw, name: str) -> str | None:
    if name == "metric.type":
        return raw.metric_type
    if name == "resource.type":
        return "cloud_run_revision"
    kind, _, key = name.split(".", 2)
    return (raw.resource if kind == "resource" else raw.labels).get(key)


def _merge(values: list) -> int | distribution_pb2.Distribution:
    if isinstance(values[0], int):
        return sum(values)
    merged = distribution_pb2.Distribution(bucket_options=values[0].bucket_options)
    width = max(len(value.bucket_counts) for value in values)
    counts = [0] * width
    total = 0.0
    for value in values:
        for index, count in enumerate(value.bucket_counts):
            counts[index] += count
        merged.count += value.count
        total += value.mean * value.count
    merged.bucket_counts.extend(counts)
    merged.mean = total / merged.count if merged.count else 0.0
    return merged


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _typed(value) -> TypedValue:
    if isinstance(value, int):
        return TypedValue(int64_value=value)
    return TypedValue(distribution_value=value)


class CloudMonitoringFake(GrpcFake):
    api = "monitoring.googleapis.com"

    def __init__(self, project_id: str = "portal-test"):
        super().__init__()
        self.project_id = project_id
        self.reset_state()

    def reset_state(self) -> None:
        self.points: list[_Raw] = []

    def _resource(self, service: str, revision: str, region: str) -> dict[str, str]:
        return {
            "project_id": self.project_id,
            "service_name": service,
            "revision_name": revision,
            "location": region,
            "configuration_name": service,
        }

    def write_requests(
        self,
        *,
        service: str,
        revision: str,
        at: float,
        count: int,
        code: int = 200,
        region: str = "us-central1",
    ) -> None:
        """`count` requests answered `code` in the minute ending at `at` (seconds since the epoch)."""
        labels = {"response_code": str(code), "response_code_class": f"{code // 100}xx", "route": ""}
        raw = _Raw(
            REQUEST_COUNT, self._resource(service, revision, region), labels, at - SAMPLE_SECONDS, at, count
        )
        with self.lock:
            self.points.append(raw)

    def write_latencies(
        self,
        *,
        service: str,
        revision: str,
        at: float,
        milliseconds: list[float],
        region: str = "us-central1",
    ) -> None:
        """The latencies of requests answered in the minute ending at `at`, as one distribution."""
        options = LATENCY_BUCKETS.exponential_buckets
        bounds = [options.scale * options.growth_factor**i for i in range(options.num_finite_buckets + 1)]
        counts = [0] * (len(bounds) + 1)
        for value in milliseconds:
            counts[next((i for i, bound in enumerate(bounds) if value < bound), len(bounds))] += 1
        distribution = distribution_pb2.Distribution(
            count=len(milliseconds),
            mean=sum(milliseconds) / len(milliseconds),
            bucket_options=LATENCY_BUCKETS,
            bucket_counts=counts,
        )
        raw = _Raw(
            REQUEST_LATENCIES,
            self._resource(service, revision, region),
            {},
            at - SAMPLE_SECONDS,
            at,
            distribution,
        )
        with self.lock:
            self.points.append(raw)

    @rpc(SERVICE, "ListTimeSeries", ListTimeSeriesRequest, ListTimeSeriesResponse)
    def list_time_series(self, request, context):
        if request.name not in (f"projects/{self.project_id}",):
            raise FakeError(
                grpc.StatusCode.PERMISSION_DENIED,
                "Permission monitoring.timeSeries.list denied (or the resource may not exist) "
                f"on {request.name}.",
            )
        clauses = _parse_filter(request.filter)
        if "end_time" not in request.interval:
            raise invalid("The interval must have an end time.")
        end = request.interval.end_time.timestamp()
        start = request.interval.start_time.timestamp() if "start_time" in request.interval else end
        if start > end:
            raise invalid("The interval's start time is after its end time.")
        aggregation = request.aggregation
        aligner, reducer = aggregation.per_series_aligner, aggregation.cross_series_reducer
        period = aggregation.alignment_period.total_seconds() if "alignment_period" in aggregation else 0
        if aligner != Aggregation.Aligner.ALIGN_NONE and period < 60:
            raise invalid("The alignment period must be at least 60 seconds.")
        if reducer != Aggregation.Reducer.REDUCE_NONE and aligner == Aggregation.Aligner.ALIGN_NONE:
            raise invalid("A cross-series reducer needs a per-series aligner other than ALIGN_NONE.")
        if aligner not in (Aggregation.Aligner.ALIGN_NONE, Aggregation.Aligner.ALIGN_DELTA):
            raise invalid(f"This fake aligns with ALIGN_DELTA only, not {aligner.name}.")
        if reducer not in (Aggregation.Reducer.REDUCE_NONE, Aggregation.Reducer.REDUCE_SUM):
            raise invalid(f"This fake reduces with REDUCE_SUM only, not {reducer.name}.")
        if request.page_size < 0 or request.page_size > MAX_PAGE:
            raise invalid(f"page_size must be between 0 and {MAX_PAGE}.")

        chosen = [
            raw
            for raw in self.points
            if all(_field(raw, name) == value for name, value in clauses.items()) and start < raw.end <= end
        ]
        # Each series (resource and metric labels), its points by alignment period (0: the newest).
        series: dict[tuple, dict[int, list]] = {}
        for raw in chosen:
            key = (tuple(sorted(raw.resource.items())), tuple(sorted(raw.labels.items())))
            index = int((end - raw.end) // period) if period else int(end - raw.end)
            series.setdefault(key, {}).setdefault(index, []).append(raw.value)
        if reducer == Aggregation.Reducer.REDUCE_SUM:
            grouped: dict[tuple, dict[int, list]] = {}
            for (resource, labels), periods in series.items():
                raw = _Raw(clauses["metric.type"], dict(resource), dict(labels), 0, 0, 0)
                group = tuple((name, _field(raw, name)) for name in aggregation.group_by_fields)
                for index, values in periods.items():
                    grouped.setdefault(group, {}).setdefault(index, []).append(_merge(values))
            keyed = {
                (
                    tuple(
                        (name.split(".", 2)[2], value)
                        for name, value in group
                        if name.startswith("resource.labels.")
                    ),
                    tuple(
                        (name.split(".", 2)[2], value)
                        for name, value in group
                        if name.startswith("metric.labels.")
                    ),
                ): periods
                for group, periods in grouped.items()
            }
        else:
            keyed = series
        found = []
        for (resource, labels), periods in sorted(keyed.items()):
            points = []
            for index in sorted(periods):
                period_end = end - index * period
                value = _merge(periods[index])
                points.append(
                    Point(
                        interval={
                            "start_time": _moment(period_end - period),
                            "end_time": _moment(period_end),
                        },
                        value=_typed(value),
                    )
                )
            distribution = not isinstance(_merge(next(iter(periods.values()))), int)
            found.append(
                TimeSeries(
                    metric={"type": clauses["metric.type"], "labels": dict(labels)},
                    resource={"type": "cloud_run_revision", "labels": dict(resource)},
                    metric_kind="DELTA",
                    value_type="DISTRIBUTION" if distribution else "INT64",
                    points=points,
                )
            )
        first = int(request.page_token) if request.page_token else 0
        size = request.page_size or MAX_PAGE
        page = found[first : first + size]
        token = str(first + size) if first + size < len(found) else ""
        return ListTimeSeriesResponse(time_series=page, next_page_token=token)
