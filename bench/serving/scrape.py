"""What the portal's traffic scraper costs a serving process: `python -m bench.serving.scrape [--quick]`.

One container serves the one-row iris load under wrk (16 connections), round after round, with
the scraper off and on in alternating order. The scraper does what beat's `worker.scrape_traffic`
does for each process: `{"cmd": "metrics"}` over the control socket, then parse the counters. It
runs at the beat interval (TRAFFIC_SCRAPE_SECONDS, 15 s: one scrape per 15 s run), and again at
0.1 s, 150 times as often, where a cost would show, beside a second run with it off (the A/A
control). On/off ratios of req/s are taken within a round; the median over rounds is reported.

A scrape at the beat interval is far below what wrk can resolve on a shared machine, so the
figure that decides is measured directly: the serving process's CPU time for a block of scrapes
while it is idle (its supervisor renders the counters; the workers do nothing), over the beat
interval, as a share of the CPU the workers use at full load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench.serving.models import iris_single_row
from bench.serving.runner import Result, Target, container, run_wrk
from serving.control import send_command
from worker.runtimes.traffic import parse_exposition

BEAT_SECONDS = 15.0
FAST_SECONDS = 0.1


class Scraper(threading.Thread):
    """Scrape the process behind `socket_path` every `interval` seconds until stopped."""

    def __init__(self, socket_path: Path, interval: float):
        super().__init__(daemon=True)
        self.socket_path, self.interval = socket_path, interval
        self.stopped = threading.Event()
        self.count = 0

    def run(self) -> None:
        # The first scrape half an interval in: a beat-interval run gets one, in its middle.
        wait = self.interval / 2
        while not self.stopped.wait(wait):
            scrape(self.socket_path)
            self.count += 1
            wait = self.interval

    def stop(self) -> int:
        self.stopped.set()
        self.join()
        return self.count


def scrape(socket_path: Path) -> None:
    answer = send_command(socket_path, {"cmd": "metrics"}, timeout=5)
    parse_exposition(answer["metrics"], endpoint="bench", revision="bench-d1")


def serve(target: Target, socket_path: Path, directory: Path) -> None:
    """Start a container that waits for the portal's word, and tell it to serve."""
    target.start(directory)
    deadline = time.monotonic() + 120
    while True:
        try:
            if send_command(socket_path, {"cmd": "status"}, timeout=2).get("ready"):
                break
        except Exception:
            pass
        if time.monotonic() > deadline or target.process.poll() is not None:
            raise RuntimeError(f"{target.name} did not get ready: see {target.log_path}")
        time.sleep(0.1)
    send_command(socket_path, {"cmd": "serve"}, timeout=10)
    target.wait_ready()
    run_wrk(target, 16, 1, directory)  # warm up


def cpu_per_scrape(target: Target, socket_path: Path, count: int) -> float:
    """Seconds of the serving process's CPU per scrape, `count` scrapes back to back, idle."""
    target.settle()
    before = target.cpu_seconds()
    for _ in range(count):
        scrape(socket_path)
    target.settle()
    return (target.cpu_seconds() - before) / count


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serving.scrape", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    parser.add_argument("--rounds", type=int, help="rounds (default 4, quick 2)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="serving workers")
    parser.add_argument("--interval", type=float, default=BEAT_SECONDS, help="the beat interval (15 s)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    rounds = args.rounds or (2 if args.quick else 4)
    seconds = max(int(args.interval), 2)  # each beat-interval run gets one scrape
    started = time.monotonic()
    # "off again" is the A/A control: how far two runs of the same thing differ on this machine.
    arms = {"off": None, "off again": None, "beat": args.interval, "fast": FAST_SECONDS}
    results: dict[str, list[Result]] = {arm: [] for arm in arms}
    scrapes: dict[str, int] = dict.fromkeys(arms, 0)
    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as tmp:
        directory = Path(tmp)
        socket_path = directory / "serving.sock"
        target = container(iris_single_row(directory), args.workers)
        target.env["SERVING_CONTROL_SOCKET"] = str(socket_path)
        try:
            serve(target, socket_path, directory)
            print(f"Serving with {args.workers} workers; {rounds} rounds of {seconds} s runs...", flush=True)
            for round_index in range(rounds):
                order = list(arms) if round_index % 2 == 0 else list(arms)[::-1]
                for arm in order:
                    scraper = Scraper(socket_path, arms[arm]) if arms[arm] else None
                    if scraper:
                        scraper.start()
                    results[arm].append(run_wrk(target, 16, seconds, directory))
                    if scraper:
                        scrapes[arm] += scraper.stop()
                print(
                    f"round {round_index + 1}/{rounds} done ({time.monotonic() - started:.0f} s)", flush=True
                )
            per_scrape = cpu_per_scrape(target, socket_path, 2000)
        finally:
            target.stop()

    def ratio(arm: str) -> tuple[float, float, float]:
        pairs = [
            a.requests_per_second / b.requests_per_second
            for a, b in zip(results[arm], results["off"], strict=True)
        ]
        return statistics.median(pairs), min(pairs), max(pairs)

    off_rps = statistics.median(run.requests_per_second for run in results["off"])
    cpu_per_request = statistics.median(run.cpu_us_per_request for run in results["off"]) / 1e6
    busy = off_rps * cpu_per_request  # CPU seconds per second the workers use at full load
    share = per_scrape / args.interval / busy
    print(f"\none-row iris, 16 connections, {args.workers} workers; medians over {rounds} rounds")
    print(f"scraper off: {off_rps:,.0f} req/s, {cpu_per_request * 1e6:.1f} us of server CPU per request")
    labels = (
        ("off again", "off, again (A/A control)"),
        ("beat", f"every {args.interval:g} s (beat)"),
        ("fast", f"every {FAST_SECONDS:g} s"),
    )
    for arm, label in labels:
        median, low, high = ratio(arm)
        print(f"scraper {label}: {median:.3f}x the req/s ({low:.3f}-{high:.3f}), {scrapes[arm]} scrapes")
    print(
        f"CPU per scrape (serving process, idle, 2,000 scrapes): {per_scrape * 1e3:.3f} ms; every "
        f"{args.interval:g} s that is {share:.4%} of the {busy:.2f} CPU-s/s the workers use at full load"
    )
    print(f"\nTotal {time.monotonic() - started:.0f} s.")


if __name__ == "__main__":
    main()
