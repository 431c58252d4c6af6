"""The GCP runtime reads an endpoint's traffic from Cloud Monitoring, on the fake Monitoring server.

The official google-cloud-monitoring client talks gRPC to tests/fakes/cloud_monitoring.py, which
holds the per-minute points Cloud Run writes for its revisions. Each test asserts the request
Google would have received and what the charts (or a rollout guard) get back.
"""

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from django.urls import reverse

from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import PROJECT
from worker.runtimes.base import PermanentError, TransientError
from worker.runtimes.traffic import TrafficWindow

START = datetime(2027, 1, 15, 7, 0, tzinfo=UTC)
END = START + timedelta(minutes=10)
LIVE = {"revision": "iris-prod-d8", "service": f"projects/{PROJECT}/locations/us-central1/services/iris-prod"}


def minute(index: int) -> float:
    """The end of the index-th minute of the window (Cloud Run writes a minute's delta at its end)."""
    return (START + timedelta(minutes=index + 1)).timestamp()


@pytest.fixture
def written(fakes):
    """Ten minutes of iris-prod: d7 answers for the first five, d8 for the last five with a few
    5xx and a slow tail; another service and another region's iris-prod are never counted."""
    monitoring = fakes.monitoring
    for index in range(5):
        monitoring.write_requests(service="iris-prod", revision="iris-prod-d7", at=minute(index), count=60)
        monitoring.write_requests(
            service="iris-prod", revision="iris-prod-d7", at=minute(index), count=3, code=401
        )
        monitoring.write_latencies(
            service="iris-prod", revision="iris-prod-d7", at=minute(index), milliseconds=[4.0] * 63
        )
    for index in range(5, 10):
        monitoring.write_requests(service="iris-prod", revision="iris-prod-d8", at=minute(index), count=90)
        monitoring.write_requests(
            service="iris-prod", revision="iris-prod-d8", at=minute(index), count=10, code=503
        )
        monitoring.write_latencies(
            service="iris-prod",
            revision="iris-prod-d8",
            at=minute(index),
            milliseconds=[2.0] * 95 + [400.0] * 5,
        )
    monitoring.write_requests(service="other", revision="other-d1", at=minute(3), count=1000)
    monitoring.write_requests(
        service="iris-prod", revision="iris-prod-d1", at=minute(3), count=1000, region="europe-west1"
    )
    return monitoring


def test_traffic_lists_cloud_runs_metrics_aligned_and_summed_as_google_documents(gcp, fakes, written):
    traffic = gcp.traffic("iris-prod", LIVE, start=START, end=END, step=300)

    counts, latencies = fakes.monitoring.requests("ListTimeSeries")
    assert counts.name == f"projects/{PROJECT}"
    assert counts.filter == (
        'metric.type = "run.googleapis.com/request_count" AND resource.type = "cloud_run_revision" '
        'AND resource.labels.service_name = "iris-prod" AND resource.labels.location = "us-central1"'
    )
    assert (counts.interval.start_time, counts.interval.end_time) == (START, END)
    assert counts.aggregation.alignment_period == timedelta(seconds=300)
    assert counts.aggregation.per_series_aligner.name == "ALIGN_DELTA"
    assert counts.aggregation.cross_series_reducer.name == "REDUCE_SUM"
    assert list(counts.aggregation.group_by_fields) == [
        "resource.labels.revision_name",
        "metric.labels.response_code_class",
    ]
    assert latencies.filter.startswith('metric.type = "run.googleapis.com/request_latencies" AND ')
    assert list(latencies.aggregation.group_by_fields) == ["resource.labels.revision_name"]

    assert traffic.source == "Cloud Monitoring"
    assert [revision.revision for revision in traffic.revisions] == ["iris-prod-d7", "iris-prod-d8"]
    [old], [new] = (revision.points for revision in traffic.revisions)
    assert (old.start, old.ok, old.client_errors, old.server_errors) == (START, 300, 15, 0)
    assert (new.start, new.ok, new.server_errors, new.error_rate) == (
        START + timedelta(minutes=5),
        450,
        50,
        0.1,
    )
    assert 0.003 < old.p50 < 0.005 and old.p99 < 0.005
    assert 0.0015 < new.p50 < 0.0025
    assert 0.3 < new.p99 < 0.5  # the slow tail: 5 % of d8's requests took 400 ms


def test_a_guard_reads_a_revisions_error_rate_and_p99_over_a_window_in_one_step(gcp, written):
    window_start = START + timedelta(minutes=5)
    traffic = gcp.traffic("iris-prod", LIVE, start=window_start, end=END, step=300)
    window = TrafficWindow.of(traffic, "iris-prod-d8")
    assert (window.requests, window.error_rate) == (500, 0.1)
    assert window.p99 is not None and window.p99 > 0.3
    assert TrafficWindow.of(traffic, "iris-prod-d7").requests == 0


def test_per_minute_steps_give_a_point_a_minute_newest_last(gcp, written):
    traffic = gcp.traffic("iris-prod", LIVE, start=START, end=END, step=60)
    points = traffic.revision("iris-prod-d8").points
    assert [point.start for point in points] == [START + timedelta(minutes=m) for m in range(5, 10)]
    assert {point.requests for point in points} == {100}


def test_without_a_live_service_every_region_is_read(gcp, fakes, written):
    traffic = gcp.traffic("iris-prod", None, start=START, end=END, step=600)
    assert "resource.labels.location" not in fakes.monitoring.requests("ListTimeSeries")[0].filter
    assert traffic.revision("iris-prod-d1").points[0].ok == 1000


def test_a_busy_monitoring_api_is_retried_and_a_refusal_is_permanent(gcp, fakes, written):
    fakes.monitoring.fail_next(1, grpc.StatusCode.UNAVAILABLE)
    assert len(gcp.traffic("iris-prod", LIVE, start=START, end=END, step=600).revisions) == 2
    fakes.monitoring.fail_next(5, grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(TransientError):
        gcp.traffic("iris-prod", LIVE, start=START, end=END, step=600)
    fakes.monitoring.reset()
    fakes.monitoring.fail_next(
        1, grpc.StatusCode.PERMISSION_DENIED, "Permission monitoring.timeSeries.list denied"
    )
    with pytest.raises(PermanentError, match="monitoring.timeSeries.list"):
        gcp.traffic("iris-prod", LIVE, start=START, end=END, step=600)


def test_the_fake_refuses_what_google_refuses(fakes):
    """The documented refusals, straight through the official client."""
    from google.api_core import exceptions as gexc
    from google.cloud import monitoring_v3

    client = monitoring_v3.MetricServiceClient(
        transport=monitoring_v3.MetricServiceClient.get_transport_class("grpc")(
            channel=grpc.insecure_channel(fakes.monitoring.endpoint.removeprefix("insecure://"))
        )
    )
    interval = {"start_time": START, "end_time": END}
    metric = 'metric.type = "run.googleapis.com/request_count"'
    delta = monitoring_v3.Aggregation.Aligner.ALIGN_DELTA
    cases = [
        ({"filter": 'resource.type = "cloud_run_revision"', "interval": interval}, "metric type"),
        ({"filter": metric + " OR x", "interval": interval}, "Could not parse filter"),
        (
            {
                "filter": metric,
                "interval": interval,
                "aggregation": {"per_series_aligner": delta, "alignment_period": {"seconds": 30}},
            },
            "at least 60 seconds",
        ),
        (
            {
                "filter": metric,
                "interval": interval,
                "aggregation": {"cross_series_reducer": monitoring_v3.Aggregation.Reducer.REDUCE_SUM},
            },
            "needs a per-series aligner",
        ),
        ({"filter": metric, "interval": {"start_time": END, "end_time": START}}, "after its end time"),
    ]
    for fields, message in cases:
        with pytest.raises(gexc.InvalidArgument, match=message):
            list(client.list_time_series(request={"name": f"projects/{PROJECT}", **fields}))
    with pytest.raises(gexc.PermissionDenied):
        list(
            client.list_time_series(
                request={"name": "projects/someone-else", "filter": metric, "interval": interval}
            )
        )


def test_the_endpoint_charts_draw_cloud_monitorings_figures(client, member, endpoint, gcp_settings, fakes):
    now = datetime.now(UTC)
    fakes.monitoring.write_requests(
        service=endpoint.name, revision=f"{endpoint.name}-d3", at=now.timestamp(), count=120
    )
    fakes.monitoring.write_latencies(
        service=endpoint.name, revision=f"{endpoint.name}-d3", at=now.timestamp(), milliseconds=[3.0] * 120
    )
    client.force_login(member)
    html = client.get(
        reverse("endpoints:endpoint-traffic", args=[endpoint.name]), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "from Cloud Monitoring" in html
    assert f'<code>{endpoint.name}-d3</code></th><td class="right">120</td>' in html
    assert html.count('<svg class="chart-plot"') == 3
