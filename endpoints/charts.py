"""Traffic charts drawn on the server as SVG: no chart library, no script needed to see them.

`traffic_charts(traffic)` turns an `EndpointTraffic` into three charts (requests per second by
status class, server error rate, latency percentiles), one line per revision and series, each with
a text summary for screen readers; `revision_rows` gives the table of each revision's window.

    {% for chart in charts %}{% include "endpoints/_chart.html" %}{% endfor %}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from endpoints.services.traffic import EndpointTraffic
from worker.runtimes.traffic import TrafficPoint, TrafficWindow

WIDTH, HEIGHT = 400, 200  # the viewBox; the drawing scales to the card's width
LEFT, RIGHT, TOP, BOTTOM = 60, 12, 10, 26
STATUS_SERIES = (
    ("ok", "2xx", "series-ok"),
    ("client_errors", "4xx", "series-client"),
    ("server_errors", "5xx", "series-server"),
)
LATENCY_SERIES = (("p50", "p50", "series-p50"), ("p95", "p95", "series-p95"), ("p99", "p99", "series-p99"))
# The three revisions that answered last get lines: solid (the latest), dashed, dotted; the table
# under the charts lists every revision.
DASHES = ("rev-0", "rev-1", "rev-2")


@dataclass(frozen=True)
class Line:
    label: str
    css: str
    path: str
    peak: float
    latest: float


@dataclass(frozen=True)
class Tick:
    at: float  # position in the viewBox
    label: str


@dataclass
class Chart:
    slug: str
    title: str
    unit: str
    lines: list[Line] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    summary: str = ""

    @property
    def empty(self) -> bool:
        return not self.lines

    width, height, left, right, top, bottom = WIDTH, HEIGHT, LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `value`."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= value * 0.999999:
            return factor * power
    return 10 * power


def _format(value: float, unit: str) -> str:
    """A value as a tick or a summary shows it: three figures, thousands as k (no 1e+03 notation)."""
    if unit == "%":
        return f"{value:.3g}%"
    if unit == "ms":
        return f"{value / 1000:.3g} s" if value >= 1000 else f"{value:.3g} ms"
    return f"{value / 1000:.3g}k/s" if value >= 1000 else f"{value:.3g}/s"


def _x_ticks(start: datetime, end: datetime, seconds: int) -> list[Tick]:
    span = (end - start).total_seconds()
    every, fmt = {3600: (900, "%H:%M"), 86400: (6 * 3600, "%H:%M"), 7 * 86400: (86400, "%a %d")}.get(
        seconds, (span / 4, "%H:%M")
    )
    first = math.ceil(start.timestamp() / every) * every
    ticks = []
    at = first
    while at <= end.timestamp():
        x = LEFT + (at - start.timestamp()) / span * (WIDTH - RIGHT - LEFT)
        ticks.append(Tick(round(x, 1), datetime.fromtimestamp(at, tz=start.tzinfo).strftime(fmt)))
        at += every
    return ticks


def _path(points: list[tuple[float, float]], *, step_x: float) -> str:
    """An SVG path through `points` (x, y), broken where a step has no value; a lone point is a dot."""
    parts: list[str] = []
    previous_x = None
    for x, y in points:
        if previous_x is None or x - previous_x > step_x * 1.5:
            parts.append(f"M{x:.1f},{y:.1f}")
            parts.append("h0.01")  # a dot when nothing follows (round line caps draw it)
        else:
            parts.append(f"L{x:.1f},{y:.1f}")
        previous_x = x
    return "".join(parts)


def _chart(
    slug: str,
    title: str,
    unit: str,
    traffic: EndpointTraffic,
    series: list[tuple[str, str, list[tuple[datetime, float]]]],
) -> Chart:
    """A chart of `series` (label, css class, [(step start, value)]) over the traffic's window."""
    chart = Chart(slug, title, unit)
    window = traffic.series
    assert window is not None
    span = (window.end - window.start).total_seconds()
    plot_width, plot_height = WIDTH - RIGHT - LEFT, HEIGHT - BOTTOM - TOP
    peak = max((value for _, _, values in series for _, value in values), default=0.0)
    top = _nice_ceiling(peak)
    chart.y_ticks = [
        Tick(round(TOP + plot_height * (1 - fraction), 1), _format(top * fraction, unit))
        for fraction in (0, 0.25, 0.5, 0.75, 1)
    ]
    chart.x_ticks = _x_ticks(window.start, window.end, traffic.window.seconds)
    step_x = plot_width * window.step / span
    for label, css, values in series:
        if not values or not any(value for _, value in values):
            continue
        points = [
            (
                LEFT + ((at - window.start).total_seconds() + window.step / 2) / span * plot_width,
                TOP + plot_height * (1 - value / top),
            )
            for at, value in values
        ]
        chart.lines.append(
            Line(label, css, _path(points, step_x=step_x), max(v for _, v in values), values[-1][1])
        )
    if chart.lines:
        described = "; ".join(
            f"{line.label}: peak {_format(line.peak, unit)}, latest {_format(line.latest, unit)}"
            for line in chart.lines
        )
        chart.summary = (
            f"{title}, {traffic.window.label.lower()}, per {_step_name(window.step)}. {described}."
        )
    else:
        chart.summary = f"{title}, {traffic.window.label.lower()}: no requests."
    return chart


def _step_name(step: int) -> str:
    return {60: "minute", 3600: "hour"}.get(step, f"{step // 60} minutes")


def traffic_charts(traffic: EndpointTraffic) -> list[Chart]:
    """The three charts of the endpoint page; none when the traffic could not be read."""
    if traffic.series is None:
        return []
    step = traffic.series.step
    # The revision that answered last first: it gets the solid lines.
    revisions = sorted(
        (revision for revision in traffic.series.revisions if revision.points),
        key=lambda revision: revision.points[-1].start,
        reverse=True,
    )
    requests, errors, latency = [], [], []
    for index, revision in enumerate(revisions[: len(DASHES)]):
        dash, name = DASHES[index], revision.revision
        for attribute, label, css in STATUS_SERIES:
            values = [(p.start, getattr(p, attribute) / step) for p in revision.points]
            requests.append((f"{name} {label}", f"{css} {dash}", values))
        errors.append(
            (name, f"series-server {dash}", [(p.start, 100 * (p.error_rate or 0.0)) for p in revision.points])
        )
        for attribute, label, css in LATENCY_SERIES:
            values = [
                (p.start, 1000 * getattr(p, attribute))
                for p in revision.points
                if getattr(p, attribute) is not None
            ]
            latency.append((f"{name} {label}", f"{css} {dash}", values))
    return [
        _chart("requests", "Requests per second by status class", "/s", traffic, requests),
        _chart("errors", "Server error rate (5xx)", "%", traffic, errors),
        _chart("latency", "Latency percentiles", "ms", traffic, latency),
    ]


@dataclass(frozen=True)
class RevisionRow:
    revision: str
    requests: int
    per_second: float
    ok: int
    client_errors: int
    server_errors: int
    error_rate: float | None
    p50: float | None
    p95: float | None
    p99: float | None

    @property
    def error_percent(self) -> str:
        return "—" if self.error_rate is None else f"{100 * self.error_rate:.3g} %"

    @property
    def latencies(self) -> list[str]:
        """p50, p95 and p99 in milliseconds, as the table shows them."""
        return [
            "—" if value is None else f"{1000 * value:.3g} ms" for value in (self.p50, self.p95, self.p99)
        ]


@dataclass(frozen=True)
class StepRow:
    start: datetime
    revision: str
    point: TrafficPoint
    step: int  # seconds

    @property
    def per_second(self) -> float:
        return self.point.requests / self.step

    @property
    def error_percent(self) -> str:
        rate = self.point.error_rate
        return "—" if rate is None else f"{100 * rate:.3g} %"

    @property
    def latencies(self) -> list[str]:
        values = (self.point.p50, self.point.p95, self.point.p99)
        return ["—" if value is None else f"{1000 * value:.3g} ms" for value in values]


def step_rows(traffic: EndpointTraffic) -> list[StepRow]:
    """Every step with requests, newest first: the charts' figures as a table."""
    if traffic.series is None:
        return []
    rows = [
        StepRow(point.start, revision.revision, point, traffic.series.step)
        for revision in traffic.series.revisions
        for point in revision.points
    ]
    return sorted(rows, key=lambda row: (row.start, row.revision), reverse=True)


def revision_rows(traffic: EndpointTraffic) -> list[RevisionRow]:
    """Each revision over the whole window: the table beside the charts (and their text form)."""
    if traffic.totals is None:
        return []
    rows = []
    for revision in traffic.totals.revisions:
        point = revision.points[0] if revision.points else TrafficPoint(traffic.totals.start)
        window = TrafficWindow.of(traffic.totals, revision.revision)
        rows.append(
            RevisionRow(
                revision=revision.revision,
                requests=point.requests,
                per_second=point.requests / traffic.window.seconds,
                ok=point.ok,
                client_errors=point.client_errors,
                server_errors=point.server_errors,
                error_rate=window.error_rate,
                p50=point.p50,
                p95=point.p95,
                p99=point.p99,
            )
        )
    return sorted(rows, key=lambda row: row.requests, reverse=True)


# -- load tests --------------------------------------------------------------------------------------

# A snapshot covers one second, so its counts are per second.
LOAD_TEST_RATES = (("rps", "requests/s", "series-ok"), ("failures", "failures/s", "series-server"))


def _seconds_chart(
    slug: str, title: str, unit: str, seconds: float, series: list[tuple[str, str, list[tuple[float, float]]]]
) -> Chart:
    """A chart of `series` (label, css class, [(second, value)]) over a load test's `seconds`."""
    chart = Chart(slug, title, unit)
    plot_width, plot_height = WIDTH - RIGHT - LEFT, HEIGHT - BOTTOM - TOP
    seconds = max(seconds, 1.0)
    top = _nice_ceiling(max((value for _, _, values in series for _, value in values), default=0.0))
    chart.y_ticks = [
        Tick(round(TOP + plot_height * (1 - fraction), 1), _format(top * fraction, unit))
        for fraction in (0, 0.25, 0.5, 0.75, 1)
    ]
    every = _nice_ceiling(seconds / 4)
    chart.x_ticks = [
        Tick(round(LEFT + at / seconds * plot_width, 1), f"{at:g} s")
        for at in (every * index for index in range(int(seconds // every) + 1))
    ]
    for label, css, values in series:
        if not values:  # a flat 0 is a figure too: no failures, answers within a millisecond
            continue
        points = [
            (LEFT + at / seconds * plot_width, TOP + plot_height * (1 - value / top)) for at, value in values
        ]
        chart.lines.append(
            Line(
                label,
                css,
                _path(points, step_x=plot_width / seconds),
                max(v for _, v in values),
                values[-1][1],
            )
        )
    described = "; ".join(
        f"{line.label}: peak {_format(line.peak, unit)}, last {_format(line.latest, unit)}"
        for line in chart.lines
    )
    chart.summary = (
        f"{title}, second by second. {described}." if chart.lines else f"{title}: no requests yet."
    )
    return chart


def load_test_charts(timeseries: list[dict], duration_seconds: int) -> list[Chart]:
    """A load test's two charts, second by second: requests and failures per second, and the
    latency percentiles of each second's requests."""
    seconds = max([duration_seconds, *(point["t"] for point in timeseries)])
    rates = [
        (label, f"{css} rev-0", [(point["t"], float(point[key])) for point in timeseries])
        for key, label, css in LOAD_TEST_RATES
    ]
    latency = [
        (
            label,
            f"{css} rev-0",
            [(point["t"], float(point[key])) for point in timeseries if point[key] is not None],
        )
        for key, label, css in LATENCY_SERIES
    ]
    return [
        _seconds_chart("load-rps", "Requests per second", "/s", seconds, rates),
        _seconds_chart("load-latency", "Latency percentiles", "ms", seconds, latency),
    ]
