"""Load on an endpoint while it is redeployed: Python clients that record every answer, and wrk.

Both run for the length of a `with` block; afterwards `Clients.failures` lists every request that
failed and `Wrk.result` holds wrk's totals (its socket errors and non-2xx answers).
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.faults.api import SETOSA

WRK_SCRIPT = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


class Clients:
    """Clients calling /predict until stopped, on kept-alive and on fresh connections, and one
    asking /v1/model on fresh connections, noting which version answered when."""

    def __init__(self, url: str, *, keepalive: int = 2, fresh: int = 2):
        self.url = url
        self.ok = 0
        self.failures: list[str] = []
        self.versions: list[tuple[float, int]] = []  # (monotonic time the request was sent, version)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._predict, args=(True,)) for _ in range(keepalive)]
        self.threads += [threading.Thread(target=self._predict, args=(False,)) for _ in range(fresh)]
        self.threads.append(threading.Thread(target=self._watch))

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def _fail(self, text: str) -> None:
        with self.lock:
            self.failures.append(f"{time.monotonic():.3f} {text}")

    def _predict(self, keepalive: bool) -> None:
        kept = httpx.Client(timeout=15) if keepalive else None
        try:
            while not self.stopping.is_set():
                try:
                    if kept is not None:
                        response = kept.post(f"{self.url}/predict", json=SETOSA)
                    else:
                        with httpx.Client(timeout=15) as once:
                            response = once.post(f"{self.url}/predict", json=SETOSA)
                except httpx.HTTPError as exc:
                    self._fail(f"{'kept-alive' if keepalive else 'fresh'}: {exc!r}")
                    continue
                if response.status_code != 200:
                    self._fail(f"HTTP {response.status_code}: {response.text[:200]}")
                    continue
                with self.lock:
                    self.ok += 1
        finally:
            if kept is not None:
                kept.close()

    def _watch(self) -> None:
        while not self.stopping.is_set():
            sent = time.monotonic()
            try:
                with httpx.Client(timeout=15) as once:
                    response = once.get(f"{self.url}/v1/model")
            except httpx.HTTPError as exc:
                self._fail(f"version watcher: {exc!r}")
                continue
            if response.status_code != 200:
                self._fail(f"version watcher: HTTP {response.status_code}")
                continue
            with self.lock:
                self.versions.append((sent, response.json()["version"]))
            time.sleep(0.02)

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        target = self.ok + count
        while self.ok < target and time.monotonic() < deadline:
            time.sleep(0.02)

    def versions_since(self, moment: float, *, samples: int = 5, timeout: float = 30) -> set[int]:
        """The versions that answered requests sent after `moment` (waiting for `samples` of them)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                seen = [version for sent, version in self.versions if sent >= moment]
            if len(seen) >= samples or time.monotonic() >= deadline:
                return set(seen)
            time.sleep(0.02)


@dataclass
class WrkResult:
    requests: int
    errors: dict[str, int]
    non_2xx: int
    output: str


class Wrk:
    """wrk POSTing predictions until the block ends (SIGINT makes it print its totals)."""

    def __init__(self, url: str, folder: Path, *, connections: int = 4, limit_seconds: int = 120):
        self.url = url
        self.script = folder / "predict.lua"
        self.output = folder / "wrk.out"
        self.connections = connections
        self.limit_seconds = limit_seconds
        self.process: subprocess.Popen | None = None
        self.result: WrkResult | None = None

    def __enter__(self) -> Wrk:
        import json

        self.script.write_text(WRK_SCRIPT.format(body=json.dumps(SETOSA)))
        with open(self.output, "wb") as output:
            self.process = subprocess.Popen(
                ["wrk", "-t1", f"-c{self.connections}", f"-d{self.limit_seconds}s", "--timeout", "10s"]
                + ["-s", str(self.script), f"{self.url}/predict"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        return self

    def __exit__(self, *exc) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.result = parse_wrk(self.output.read_text())


def parse_wrk(output: str) -> WrkResult:
    requests = re.search(r"(\d+) requests in", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True))
        if sockets
        else {}
    )
    return WrkResult(
        requests=int(requests.group(1)) if requests else 0,
        errors={kind: count for kind, count in errors.items() if count},
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        output=output,
    )
