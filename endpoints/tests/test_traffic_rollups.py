"""The scraper's rollups: what a sample adds, restarts and overlapping scrapes, pruning, and the
series read back in steps (minutes, then hours for whole-hour steps)."""

from datetime import UTC, datetime, timedelta

import pytest

from endpoints.models import TrafficCursor, TrafficRollup
from endpoints.services.traffic import rollup_series, traffic_prune, traffic_record
from worker.runtimes.traffic import LATENCY_BOUNDS, TrafficSample, TrafficWindow, quantile

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
BUCKETS = len(LATENCY_BOUNDS) + 1


def sample(
    *, ok=0, client=0, server=0, fast=0, slow=0, started=None, revision="iris-prod-d1"
) -> TrafficSample:
    """Counters of a process: `fast` requests in the 1-2.5 ms bucket, `slow` in the 50-100 ms one."""
    buckets = [0] * BUCKETS
    buckets[2], buckets[7] = fast, slow
    return TrafficSample(
        endpoint="iris-prod",
        revision=revision,
        started=(T0 - timedelta(seconds=5)).timestamp() if started is None else started,
        ok=ok,
        client_errors=client,
        server_errors=server,
        buckets=tuple(buckets),
        latency_sum=fast * 0.002 + slow * 0.08,
    )


def minute_row(at: datetime, revision="iris-prod-d1") -> TrafficRollup:
    return TrafficRollup.objects.get(span=1, minute=int(at.timestamp() // 60), revision=revision)


def test_a_new_process_counts_from_its_start_then_only_what_came_after(endpoint):
    traffic_record(samples=[sample(ok=8, client=1, server=1, fast=10)], at=T0)
    traffic_record(
        samples=[sample(ok=20, client=1, server=4, fast=20, slow=5)], at=T0 + timedelta(seconds=15)
    )
    row = minute_row(T0)
    assert (row.ok, row.client_errors, row.server_errors) == (20, 1, 4)
    assert (row.latency_2, row.latency_7) == (20, 5)
    hour = TrafficRollup.objects.get(span=60, revision="iris-prod-d1")
    assert (hour.ok, hour.server_errors, hour.minute) == (20, 4, row.minute - row.minute % 60)
    traffic_record(samples=[sample(ok=30, client=1, server=4, fast=30, slow=5)], at=T0 + timedelta(minutes=1))
    assert minute_row(T0 + timedelta(minutes=1)).ok == 10
    assert TrafficRollup.objects.get(span=60).ok == 30


def test_a_process_found_long_after_its_start_counts_from_now(endpoint):
    old = (T0 - timedelta(hours=3)).timestamp()
    assert traffic_record(samples=[sample(ok=500, fast=500, started=old)], at=T0) == 0
    assert not TrafficRollup.objects.exists()
    traffic_record(samples=[sample(ok=503, fast=503, started=old)], at=T0 + timedelta(seconds=15))
    assert minute_row(T0).ok == 3


def test_a_restarted_process_counts_from_zero(endpoint):
    traffic_record(samples=[sample(ok=50, fast=50)], at=T0)
    restarted = (T0 + timedelta(seconds=20)).timestamp()
    traffic_record(samples=[sample(ok=4, fast=4, started=restarted)], at=T0 + timedelta(seconds=30))
    assert minute_row(T0).ok == 54
    assert TrafficCursor.objects.get().started == restarted


def test_a_scrape_older_than_the_last_one_counted_is_dropped(endpoint):
    started = T0.timestamp()
    traffic_record(samples=[sample(ok=10, fast=10, started=started)], at=T0 + timedelta(seconds=30))
    assert traffic_record(samples=[sample(ok=7, fast=7, started=started)], at=T0 + timedelta(seconds=15)) == 0
    traffic_record(samples=[sample(ok=12, fast=12, started=started)], at=T0 + timedelta(seconds=45))
    assert minute_row(T0).ok == 12


def test_samples_of_unknown_or_deleted_endpoints_are_ignored(endpoint):
    stray = TrafficSample("no-such", "no-such-d1", T0.timestamp(), 5, 0, 0, (5,) + (0,) * (BUCKETS - 1), 0.1)
    assert traffic_record(samples=[stray], at=T0) == 0
    assert not TrafficCursor.objects.exists()


def test_pruning_forgets_rollups_past_the_retention(endpoint, settings):
    settings.TRAFFIC_RETENTION_DAYS = 2
    traffic_record(samples=[sample(ok=1, fast=1)], at=T0 - timedelta(days=3))
    traffic_record(samples=[sample(ok=2, fast=2)], at=T0 - timedelta(days=1, hours=1))
    assert traffic_prune(now=T0) == 2  # the old minute and its hour
    assert sorted(TrafficRollup.objects.values_list("span", "ok")) == [(1, 1), (60, 1)]
    assert TrafficCursor.objects.count() == 0  # scraped more than a day ago


def test_series_sum_minutes_into_steps_per_revision(endpoint):
    traffic_record(samples=[sample(ok=10, fast=10)], at=T0)
    traffic_record(samples=[sample(ok=20, server=5, fast=20, slow=5)], at=T0 + timedelta(minutes=3))
    traffic_record(
        samples=[
            sample(ok=20, server=5, fast=20, slow=5),
            sample(ok=6, fast=6, revision="iris-prod-d2", started=(T0 + timedelta(minutes=7)).timestamp()),
        ],
        at=T0 + timedelta(minutes=7),
    )
    revisions = rollup_series(endpoint="iris-prod", start=T0, end=T0 + timedelta(minutes=10), step=300)
    assert [r.revision for r in revisions] == ["iris-prod-d1", "iris-prod-d2"]
    first, second = revisions[0].points, revisions[1].points
    assert [(p.start, p.ok, p.server_errors) for p in first] == [(T0, 20, 5)]
    assert first[0].error_rate == pytest.approx(0.2)
    assert first[0].p50 == pytest.approx(quantile(0.5, [0, 0, 20, 0, 0, 0, 0, 5] + [0] * 8))
    assert LATENCY_BOUNDS[1] < first[0].p50 <= LATENCY_BOUNDS[2]
    assert LATENCY_BOUNDS[6] < first[0].p99 <= LATENCY_BOUNDS[7]
    assert [(p.start, p.ok) for p in second] == [(T0 + timedelta(minutes=5), 6)]


def test_a_window_of_whole_hours_reads_the_hour_rollups(endpoint):
    for hour in range(3):
        traffic_record(
            samples=[sample(ok=10 * (hour + 1), fast=10 * (hour + 1))], at=T0 + timedelta(hours=hour)
        )
    TrafficRollup.objects.filter(span=1).delete()  # only the hours are left to read
    revisions = rollup_series(endpoint="iris-prod", start=T0, end=T0 + timedelta(hours=3), step=3600)
    assert [(p.start.hour, p.ok) for p in revisions[0].points] == [(10, 10), (11, 10), (12, 10)]
    whole = rollup_series(endpoint="iris-prod", start=T0, end=T0 + timedelta(hours=3), step=3 * 3600)
    assert [p.ok for p in whole[0].points] == [30]


def test_a_guard_reads_a_revisions_window_in_one_step(endpoint):
    from worker.runtimes.traffic import Traffic

    traffic_record(samples=[sample(ok=10, fast=10)], at=T0)
    traffic_record(samples=[sample(ok=18, server=2, fast=10, slow=10)], at=T0 + timedelta(minutes=4))
    end = T0 + timedelta(minutes=5)
    traffic = Traffic(T0, end, 300, rollup_series(endpoint="iris-prod", start=T0, end=end, step=300))
    window = TrafficWindow.of(traffic, "iris-prod-d1")
    assert (window.requests, window.error_rate) == (20, 0.1)
    assert LATENCY_BOUNDS[6] < window.p99 <= LATENCY_BOUNDS[7]
    assert TrafficWindow.of(traffic, "iris-prod-d9").requests == 0


@pytest.mark.parametrize(
    ("start", "end", "step", "problem"),
    [
        (T0, T0, 60, "after start"),
        (T0, T0 + timedelta(hours=1), 90, "whole number of minutes"),
        (T0.replace(tzinfo=None), T0 + timedelta(hours=1), 60, "time zone"),
        (T0, T0 + timedelta(days=30), 60, "more than"),
    ],
)
def test_a_window_that_cannot_be_asked_is_refused(endpoint, start, end, step, problem):
    with pytest.raises(ValueError, match=problem):
        rollup_series(endpoint="iris-prod", start=start, end=end, step=step)


def test_beat_scrapes_every_traffic_scrape_seconds_and_prunes_hourly():
    from django.conf import settings

    from portal.celery import app

    schedule = settings.CELERY_BEAT_SCHEDULE
    scrape, prune = schedule["scrape-traffic"], schedule["prune-traffic"]
    assert (scrape["task"], scrape["schedule"]) == ("worker.scrape_traffic", settings.TRAFFIC_SCRAPE_SECONDS)
    assert scrape["options"]["expires"] == settings.TRAFFIC_SCRAPE_SECONDS  # a late scrape is dropped
    assert (prune["task"], prune["schedule"]) == ("worker.prune_traffic", 3600.0)
    app.loader.import_default_modules()
    assert {"worker.scrape_traffic", "worker.prune_traffic"} <= set(app.tasks)


def test_the_prune_task_forgets_old_rollups(endpoint, settings):
    from worker import tasks

    settings.TRAFFIC_RETENTION_DAYS = 1
    traffic_record(samples=[sample(ok=1, fast=1, started=0)], at=T0)  # found long after its start
    traffic_record(samples=[sample(ok=3, fast=3, started=0)], at=T0 + timedelta(seconds=15))
    assert TrafficRollup.objects.count() == 2
    assert tasks.prune_traffic() == 2  # T0 is long before today
    assert not TrafficRollup.objects.exists()
