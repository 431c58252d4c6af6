"""Run one load test with Locust as a library, in a process of its own, and report on stdout.

Locust patches the standard library with gevent when it is imported, so it never is in the portal
or the Celery worker: the load test task (`endpoints.services.load_tests`) starts this module as
a child process and reads what it prints.

    API_KEY=... python -m worker.load_test locustfile.py --users 5 --spawn-rate 2 --duration 30

Every second it prints one JSON line, a snapshot of that second:

    {"t": 3, "users": 5, "requests": 212, "failures": 0, "rps": 212.0, "p50": 9, "p95": 21, "p99": 30}

(milliseconds; the percentiles are over that second's requests, null when there were none), and
at the end one line with "final": true and the whole test's figures: requests, failures, rps,
p50/p95/p99/avg/max and failures_by_reason ([{"name", "reason", "count"}], most frequent first).
SIGTERM ends the test early (the final line then says "stopped": true). The process ends by
itself once the duration has passed, and when the process that started it is gone.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import signal
import sys
import time

import gevent
import locust  # its import patches the standard library with gevent, as the locust command does
from locust import User
from locust.env import Environment
from locust.stats import CatchResponseError, calculate_response_time_percentile, diff_response_time_dicts

SNAPSHOT_SECONDS = 1.0
PERCENTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


def user_classes(path: str) -> list[type[User]]:
    """The User classes a locustfile defines (not the ones it imports)."""
    spec = importlib.util.spec_from_file_location("locustfile", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, User)
        and value.__module__ == module.__name__
        and not value.abstract
    ]
    if not found:
        raise SystemExit(f"{path} defines no Locust user class")
    return found


def percentiles(response_times: dict[int, int], count: int) -> dict[str, int | None]:
    return {
        name: calculate_response_time_percentile(response_times, count, share) if count else None
        for name, share in PERCENTILES.items()
    }


def reason_of(error) -> str:
    """What a failure says: the locustfile's own reason, else the exception as Locust names it."""
    if isinstance(error, CatchResponseError):
        return str(error.args[0])
    return error if isinstance(error, str) else repr(error)


def final_report(environment: Environment, seconds: float, stopped: bool) -> dict:
    total = environment.stats.total
    reasons = sorted(
        (
            {"name": error.name, "reason": reason_of(error.error), "count": error.occurrences}
            for error in environment.stats.errors.values()
        ),
        key=lambda each: -each["count"],
    )
    return {
        "final": True,
        "stopped": stopped,
        "seconds": round(seconds, 1),
        "requests": total.num_requests,
        "failures": total.num_failures,
        "rps": round(total.num_requests / seconds, 2) if seconds else 0.0,
        **percentiles(total.response_times, total.num_requests),
        "avg": round(total.avg_response_time, 1),
        "max": round(total.max_response_time or 0, 1),
        "failures_by_reason": reasons,
    }


def emit(document: dict) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def run(path: str, *, users: int, spawn_rate: float, duration: float) -> int:
    environment = Environment(user_classes=user_classes(path), events=locust.events)
    runner = environment.create_local_runner()
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    parent = os.getppid()
    started = time.monotonic()
    runner.start(users, spawn_rate)
    seen_requests, seen_failures, seen_times = 0, 0, {}
    tick = 0
    while not stop.is_set():
        tick += 1
        remaining = started + min(tick * SNAPSHOT_SECONDS, duration) - time.monotonic()
        if stop.wait(max(remaining, 0)):
            break
        total = environment.stats.total  # read again: starting the runner may replace it
        requests = total.num_requests - seen_requests
        times = diff_response_time_dicts(total.response_times, seen_times)
        elapsed = time.monotonic() - started
        emit(
            {
                "t": round(elapsed, 1),
                "users": runner.user_count,
                "requests": requests,
                "failures": total.num_failures - seen_failures,
                "rps": round(requests / SNAPSHOT_SECONDS, 2),
                **percentiles(times, requests),
            }
        )
        seen_requests, seen_failures, seen_times = (
            total.num_requests,
            total.num_failures,
            dict(total.response_times),
        )
        if elapsed >= duration or os.getppid() != parent:
            break
    runner.quit()
    emit(final_report(environment, time.monotonic() - started, stopped=stop.is_set()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("locustfile")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--spawn-rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    args = parser.parse_args(argv)
    return run(args.locustfile, users=args.users, spawn_rate=args.spawn_rate, duration=args.duration)


if __name__ == "__main__":
    sys.exit(main())
