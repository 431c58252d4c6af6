"""The endpoint's traffic charts: the partial the endpoint page loads, the page of its own, the
window choice, and a constant number of queries however much traffic there is."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from endpoints.services.traffic import traffic_record
from worker.runtimes.base import Runtime
from worker.runtimes.memory import MemoryRuntime
from worker.runtimes.traffic import LATENCY_BOUNDS, TrafficSample

HTMX = {"HTTP_HX_REQUEST": "true"}


def record(minutes: int, *, revisions=("iris-prod-d1",), server=1) -> None:
    """`minutes` minutes of traffic up to now for each revision: 10 requests a minute, `server` 5xx."""
    now = timezone.now()
    start = now - timedelta(minutes=minutes)
    for index, revision in enumerate(revisions):
        for minute in range(minutes + 1):
            total = 10 * minute
            buckets = [0] * (len(LATENCY_BOUNDS) + 1)
            buckets[2 + index] = total
            sample = TrafficSample(
                "iris-prod", revision, start.timestamp(), total - server * minute, 0, server * minute,
                tuple(buckets), 0.002 * total,
            )  # fmt: skip
            traffic_record(samples=[sample], at=start + timedelta(minutes=minute))


@pytest.fixture
def url(endpoint):
    return reverse("endpoints:endpoint-traffic", args=[endpoint.name])


def test_the_endpoint_page_loads_the_charts_into_its_traffic_card(client, member, endpoint, url):
    client.force_login(member)
    page = client.get(reverse("endpoints:endpoint-detail", args=[endpoint.name])).content.decode()
    assert f'hx-get="{url}?window=hour" hx-trigger="load"' in page
    assert f'<a href="{url}">Open the traffic charts</a>' in page


def test_the_charts_draw_each_revisions_series_with_a_text_summary(client, member, endpoint, url):
    record(30, revisions=("iris-prod-d1", "iris-prod-d2"))
    client.force_login(member)
    response = client.get(url, {"window": "hour"}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.startswith('<div id="traffic-charts"')  # the partial, not a page
    assert 'hx-trigger="every 15s"' in html
    assert html.count('<svg class="chart-plot"') == 3
    for title in ("Requests per second by status class", "Server error rate (5xx)", "Latency percentiles"):
        assert f'<figcaption class="chart-title">{title}</figcaption>' in html
    assert 'role="img" aria-labelledby="chart-requests-title chart-requests-desc"' in html
    assert "iris-prod-d1 2xx: peak" in html and "iris-prod-d2 5xx: peak" in html
    assert "series-server rev-1" in html or "series-server rev-0" in html
    # The table: 300 requests a revision over the hour, 30 of them 5xx.
    assert '<code>iris-prod-d1</code></th><td class="right">300</td>' in html
    assert html.count('<td class="right">10 %</td>') == 2 + 60  # and each minute, in the step table


def test_the_week_and_the_day_windows_draw_too(client, member, endpoint, url):
    record(90)
    client.force_login(member)
    for window, refresh in (("day", 60), ("week", 300)):
        html = client.get(url, {"window": window}, **HTMX).content.decode()
        assert f'hx-trigger="every {refresh}s"' in html
        assert (
            f'?window={window}" hx-target="#traffic-charts" hx-swap="outerHTML" aria-current="true"' in html
        )
        assert '<code>iris-prod-d1</code></th><td class="right">900</td>' in html


def test_without_javascript_the_charts_are_a_page_of_their_own(client, member, endpoint, url):
    record(5)
    client.force_login(member)
    html = client.get(url).content.decode()
    assert "<h1>Traffic</h1>" in html
    assert html.count('<svg class="chart-plot"') == 3


def test_an_endpoint_without_traffic_says_so(client, member, endpoint, url):
    client.force_login(member)
    html = client.get(url, **HTMX).content.decode()
    assert "No request reached this endpoint in the last hour." in html
    assert "<svg" not in html


def test_an_unknown_window_is_refused_with_the_last_hour_shown(client, member, endpoint, url):
    client.force_login(member)
    response = client.get(url, {"window": "year"})
    assert response.status_code == 400
    assert "There is no &#x27;year&#x27; window: showing the last hour." in response.content.decode()


class NoMetricsRuntime(MemoryRuntime):
    """A runtime that keeps no metrics: Runtime.traffic's own answer."""

    name = "metricless"
    traffic = Runtime.traffic


def test_a_runtime_without_metrics_says_why(client, member, endpoint, url, settings):
    from worker.runtimes import get_runtime

    settings.RUNTIME = f"{__name__}.NoMetricsRuntime"
    assert isinstance(get_runtime(), NoMetricsRuntime)
    client.force_login(member)
    html = client.get(url, **HTMX).content.decode()
    assert "The traffic could not be read: The metricless runtime reports no traffic." in html


def test_the_charts_need_a_signed_in_user(client, endpoint, url):
    assert client.get(url).status_code == 302


@pytest.mark.parametrize("window", ["hour", "week"])
def test_the_charts_take_the_same_queries_however_much_traffic(
    client, member, endpoint, url, window, django_assert_num_queries
):
    client.force_login(member)
    client.get(url, {"window": window}, **HTMX)  # the session's first read settles
    with django_assert_num_queries(5):
        client.get(url, {"window": window}, **HTMX)
    record(120, revisions=("iris-prod-d1", "iris-prod-d2", "iris-prod-d3"))
    with django_assert_num_queries(5):
        html = client.get(url, {"window": window}, **HTMX).content.decode()
    assert html.count('<th scope="row"><code>iris-prod-d') == 3
