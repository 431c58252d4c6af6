"""Endpoint traffic: the local scraper's per-minute rollups (written, read, pruned) and the one read
the dashboard makes.

Beat calls `traffic_scrape` every TRAFFIC_SCRAPE_SECONDS: the runtime reads every serving process's
counters (`Runtime.scrape_traffic`), and `traffic_record` adds what each counted since the previous
scrape to the minute and the hour it fell in. `traffic_prune` forgets rollups older than
TRAFFIC_RETENTION_DAYS. The local runtime's `traffic` reads them back with `rollup_series`.

    traffic = endpoint_traffic(endpoint=endpoint, window="day")  # what the charts draw
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import ExpressionWrapper, F, IntegerField, Sum, Value
from django.utils import timezone

from endpoints.models import LATENCY_BUCKETS, Endpoint, TrafficCursor, TrafficRollup
from endpoints.services.errors import ServiceError
from worker.runtimes import get_runtime
from worker.runtimes.base import RuntimeFailure
from worker.runtimes.traffic import (
    LATENCY_BOUNDS,
    RevisionTraffic,
    Traffic,
    TrafficPoint,
    TrafficSample,
    check_window,
    epoch_minute,
    from_epoch,
    quantile,
)

log = logging.getLogger(__name__)

assert LATENCY_BUCKETS == len(LATENCY_BOUNDS) + 1  # the rollup's columns are the scraper's buckets
BUCKET_FIELDS = tuple(f"latency_{index}" for index in range(LATENCY_BUCKETS))
COUNT_FIELDS = ("ok", "client_errors", "server_errors", "latency_sum", *BUCKET_FIELDS)
MINUTE, HOUR = 1, 60  # rollup spans, in minutes


@dataclass(frozen=True)
class Window:
    """A chart's window: how far back, in steps of how long."""

    name: str
    label: str
    seconds: int
    step: int
    refresh: int  # seconds between refreshes while the page is open


WINDOWS = {
    "hour": Window("hour", "Last hour", 3600, 60, 15),
    "day": Window("day", "Last day", 86400, 600, 60),
    "week": Window("week", "Last week", 7 * 86400, 3600, 300),
}


# Writing -------------------------------------------------------------------------------------------


def traffic_scrape() -> int:
    """Read every serving process's counters and record them; the number of processes read."""
    samples = get_runtime().scrape_traffic()
    if samples:
        traffic_record(samples=samples, at=timezone.now())
    return len(samples)


def _counters(sample: TrafficSample) -> dict:
    return {
        "ok": sample.ok,
        "client_errors": sample.client_errors,
        "server_errors": sample.server_errors,
        "latency_sum": sample.latency_sum,
        "buckets": list(sample.buckets),
    }


def _delta(now: dict, before: dict | None) -> dict | None:
    """What `now` counted after `before` (all of it when the counters went back: a restart)."""
    if before is None:
        return now
    delta = {
        key: now[key] - before.get(key, 0) for key in ("ok", "client_errors", "server_errors", "latency_sum")
    }
    old_buckets = before.get("buckets") or [0] * len(now["buckets"])
    delta["buckets"] = [a - b for a, b in zip(now["buckets"], old_buckets, strict=True)]
    if any(value < 0 for key, value in delta.items() if key != "buckets") or min(delta["buckets"]) < 0:
        return now
    return delta


def traffic_record(*, samples: list[TrafficSample], at: datetime) -> int:
    """Add what each sample counted since its process's previous sample to the rollups of the minute
    (and hour) of `at`; the number of samples that counted something.

    A process seen for the first time counts from its start when it started within two scrape
    intervals (a new revision), else from now (the scraper was off, or the cursor pruned). Samples
    are serialised per process by its cursor row, and one older than the cursor is dropped, so
    overlapping scrapes never count a request twice.
    """
    names = {sample.endpoint for sample in samples}
    ids = dict(Endpoint.objects.filter(name__in=names, deleted_at__isnull=True).values_list("name", "id"))
    samples = [sample for sample in samples if sample.endpoint in ids]
    if not samples:
        return 0
    minute = epoch_minute(at)
    fresh_after = at.timestamp() - 2 * settings.TRAFFIC_SCRAPE_SECONDS
    rows: list[tuple] = []
    with transaction.atomic():
        cursors = {
            (cursor.endpoint_id, cursor.revision): cursor
            for cursor in TrafficCursor.objects.select_for_update()
            .filter(endpoint_id__in=set(ids.values()))
            .order_by("endpoint_id", "revision")
        }
        moved = []
        for sample in samples:
            endpoint_id = ids[sample.endpoint]
            cursor = cursors.get((endpoint_id, sample.revision))
            if cursor is not None and cursor.scraped_at > at:
                continue  # a later scrape already counted past this one
            now = _counters(sample)
            if cursor is None:
                delta = now if sample.started >= fresh_after else None
            else:
                delta = _delta(now, cursor.counters if cursor.started == sample.started else None)
            moved.append(
                TrafficCursor(
                    endpoint_id=endpoint_id,
                    revision=sample.revision,
                    started=sample.started,
                    scraped_at=at,
                    counters=now,
                )
            )
            if delta and (delta["ok"] or delta["client_errors"] or delta["server_errors"]):
                values = (delta["ok"], delta["client_errors"], delta["server_errors"], delta["latency_sum"])
                for span, start in ((MINUTE, minute), (HOUR, minute - minute % 60)):
                    rows.append((endpoint_id, sample.revision, span, start, *values, *delta["buckets"]))
        TrafficCursor.objects.bulk_create(
            moved,
            update_conflicts=True,
            unique_fields=["endpoint", "revision"],
            update_fields=["started", "scraped_at", "counters"],
        )
        _add_to_rollups(rows)
    return len(rows) // 2


def _add_to_rollups(rows: list[tuple]) -> None:
    """Insert the rows, or add them to the rollups already there (one statement)."""
    if not rows:
        return
    table = connection.ops.quote_name(TrafficRollup._meta.db_table)
    columns = ["endpoint_id", "revision", "span", "minute", *COUNT_FIELDS]
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    quoted = [connection.ops.quote_name(column) for column in columns]
    updates = ", ".join(f"{name} = {table}.{name} + EXCLUDED.{name}" for name in quoted[4:])
    sql = (
        f"INSERT INTO {table} ({', '.join(quoted)}) VALUES {', '.join([placeholders] * len(rows))} "
        f"ON CONFLICT (endpoint_id, span, minute, revision) DO UPDATE SET {updates}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for row in rows for value in row])


def traffic_prune(*, now: datetime | None = None) -> int:
    """Forget rollups older than TRAFFIC_RETENTION_DAYS, and the cursors of processes gone a day."""
    now = now or timezone.now()
    oldest = epoch_minute(now - timedelta(days=settings.TRAFFIC_RETENTION_DAYS))
    deleted, _ = TrafficRollup.objects.filter(minute__lt=oldest).delete()
    TrafficCursor.objects.filter(scraped_at__lt=now - timedelta(days=1)).delete()
    return deleted


# Reading -------------------------------------------------------------------------------------------


def rollup_series(*, endpoint: str, start: datetime, end: datetime, step: int) -> tuple[RevisionTraffic, ...]:
    """Each revision's points in [start, end), `step` seconds each, summed from the rollups in one
    query (hour rollups when the steps are whole hours on hour boundaries)."""
    check_window(start, end, step)
    low, high = epoch_minute(start), epoch_minute(end)
    step_minutes = step // 60
    span = HOUR if step_minutes % 60 == 0 and low % 60 == 0 and high % 60 == 0 else MINUTE
    bucket = ExpressionWrapper(
        (F("minute") - Value(low)) / Value(step_minutes) * Value(step_minutes) + Value(low),
        output_field=IntegerField(),
    )
    rows = (
        TrafficRollup.objects.filter(
            endpoint__name=endpoint,
            endpoint__deleted_at__isnull=True,
            span=span,
            minute__gte=low,
            minute__lt=high,
        )
        .annotate(bucket=bucket)
        .values("revision", "bucket")
        .annotate(**{f"sum_{name}": Sum(name) for name in COUNT_FIELDS})
        .order_by("revision", "bucket")
    )
    series: dict[str, list[TrafficPoint]] = {}
    for row in cast(Iterable[dict[str, Any]], rows):
        buckets = [row[f"sum_{name}"] for name in BUCKET_FIELDS]
        series.setdefault(row["revision"], []).append(
            TrafficPoint(
                start=from_epoch(row["bucket"] * 60),
                ok=row["sum_ok"],
                client_errors=row["sum_client_errors"],
                server_errors=row["sum_server_errors"],
                p50=quantile(0.5, buckets),
                p95=quantile(0.95, buckets),
                p99=quantile(0.99, buckets),
            )
        )
    return tuple(RevisionTraffic(name, tuple(points)) for name, points in series.items())


@dataclass(frozen=True)
class EndpointTraffic:
    """What the charts draw: the series and each revision's whole window, or why there is none."""

    window: Window
    series: Traffic | None = None
    totals: Traffic | None = None
    error: str = ""


def window_bounds(window: Window, now: datetime) -> tuple[datetime, datetime]:
    """The window ending with the step `now` falls in, aligned to whole steps."""
    end_epoch = (int(now.timestamp()) // window.step + 1) * window.step
    end = datetime.fromtimestamp(end_epoch, tz=UTC)
    return end - timedelta(seconds=window.seconds), end


def endpoint_traffic(*, endpoint: Endpoint, window: str, now: datetime | None = None) -> EndpointTraffic:
    """The endpoint's traffic over the named window (hour, day or week), from its runtime: the
    series in steps, and each revision's whole window in one step."""
    if window not in WINDOWS:
        raise ServiceError(f"Unknown window {window!r}: choose one of {', '.join(WINDOWS)}.")
    chosen = WINDOWS[window]
    start, end = window_bounds(chosen, now or timezone.now())
    live = endpoint.live_deployment.resources if endpoint.live_deployment else None
    runtime = get_runtime()
    try:
        series = runtime.traffic(endpoint.name, live, start=start, end=end, step=chosen.step)
        totals = runtime.traffic(endpoint.name, live, start=start, end=end, step=chosen.seconds)
    except RuntimeFailure as exc:
        return EndpointTraffic(chosen, error=str(exc))
    return EndpointTraffic(chosen, series, totals)
