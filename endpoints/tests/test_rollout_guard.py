"""The rollout guard: thresholds, the minimum number of requests, and the window it reads."""

from datetime import UTC, datetime, timedelta

import pytest

from endpoints.services.rollout_guard import Guard, judge
from worker.runtimes.traffic import RevisionTraffic, Traffic, TrafficPoint, TrafficWindow

GUARD = Guard(max_error_percent=5.0, max_p99_ms=500, min_requests=50)
START = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def window(*, ok=0, errors=0, client_errors=0, p99=None) -> TrafficWindow:
    return TrafficWindow(
        "iris-d8",
        ok + errors + client_errors,
        errors / (ok + errors + client_errors) if ok + errors + client_errors else None,
        p99,
    )


def test_a_revision_under_both_thresholds_is_healthy():
    verdict = judge(window(ok=97, errors=3, p99=0.120), GUARD, window_seconds=300)
    assert verdict.healthy is True
    assert verdict.reason == "100 requests over the last 5 minutes: 5xx on 3.0%, p99 120 ms"


def test_a_5xx_share_above_the_threshold_is_unhealthy_and_says_by_how_much():
    verdict = judge(window(ok=90, errors=10, p99=0.010), GUARD, window_seconds=300)
    assert verdict.healthy is False
    assert verdict.reason == "5xx on 10.0% of 100 requests over the last 5 minutes, above 5%"


def test_exactly_the_threshold_still_passes():
    assert judge(window(ok=95, errors=5), GUARD, window_seconds=60).healthy is True


def test_client_errors_are_the_callers_and_do_not_count_against_the_revision():
    assert judge(window(ok=10, client_errors=90), GUARD, window_seconds=60).healthy is True


def test_a_slow_p99_is_unhealthy_even_without_errors():
    verdict = judge(window(ok=100, p99=0.750), GUARD, window_seconds=120)
    assert verdict.healthy is False
    assert verdict.reason == "p99 latency 750 ms over the last 2 minutes, above 500 ms"


def test_both_problems_are_named():
    reason = judge(window(ok=50, errors=50, p99=2.5), GUARD, window_seconds=60).reason
    assert "5xx on 50.0%" in reason and "p99 latency 2500 ms" in reason


@pytest.mark.parametrize("requests", [0, 1, 49])
def test_below_the_minimum_nothing_is_judged_even_if_every_request_failed(requests):
    verdict = judge(window(errors=requests, p99=9.0), GUARD, window_seconds=300)
    assert verdict.healthy is None
    assert f"{requests} request" in verdict.reason and "50 needed to judge" in verdict.reason


def test_the_minimum_is_reached_at_exactly_that_many_requests():
    assert judge(window(errors=50), GUARD, window_seconds=300).healthy is False


def test_the_window_sums_only_the_revision_judged_and_takes_its_worst_p99():
    traffic = Traffic(
        START,
        START + timedelta(minutes=5),
        60,
        (
            RevisionTraffic(
                "iris-d8",
                (
                    TrafficPoint(START, ok=40, server_errors=0, p99=0.010),
                    TrafficPoint(START + timedelta(minutes=1), ok=40, server_errors=20, p99=0.600),
                ),
            ),
            RevisionTraffic("iris-d7", (TrafficPoint(START, ok=1000, server_errors=0, p99=0.001),)),
        ),
    )
    seen = TrafficWindow.of(traffic, "iris-d8")
    assert (seen.requests, seen.p99) == (100, 0.600)
    verdict = judge(seen, GUARD, window_seconds=300)
    assert verdict.healthy is False and "5xx on 20.0% of 100 requests" in verdict.reason
    assert judge(TrafficWindow.of(traffic, "iris-d9"), GUARD, window_seconds=300).healthy is None
