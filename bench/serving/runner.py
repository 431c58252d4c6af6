"""Start the servers under test and load them with wrk."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from bench.serving.models import Workload

REPO = Path(__file__).resolve().parents[2]
WRK = "/usr/bin/wrk"
API_KEY = "bench-key-0001-not-a-secret-at-all"

LUA = """\
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
{extra_headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK-RESULT {{\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, "
    .. "\\"socket_errors\\": %d, \\"bad_status\\": %d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Target:
    """One server under test: how to start it and where to send the workload."""

    name: str
    command: list[str]
    env: dict
    path: str
    workload: Workload
    api_key: str | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self, log_dir: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "PORT": str(self.port), **self.env}
        command = [arg.replace("{port}", str(self.port)) for arg in self.command]
        log = open(log_dir / f"{self.name.replace(' ', '-')}.log", "wb")
        self.process = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        headers = {
            "content-type": "application/json",
            **({"x-api-key": self.api_key} if self.api_key else {}),
        }
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            try:
                answer = httpx.post(self.url, content=self.workload.body, headers=headers, timeout=5)
                if answer.status_code == 200:
                    return
                raise RuntimeError(f"{self.name} answered {answer.status_code}: {answer.text[:300]}")
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout} s")

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server's whole process group."""
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.process.pid:  # process group id
                ticks += int(fields[11]) + int(fields[12])  # utime + stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the server is idle again: a slow server keeps working off its backlog after
        wrk stops, and that work must not be charged to the next target measured."""
        deadline = time.monotonic() + timeout
        before = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = self.cpu_seconds()
            if now - before < 0.02:
                return
            before = now

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def container(workload: Workload, workers: int, access_file: Path | None = None) -> Target:
    env = {**workload.env(), "SERVING_WORKERS": str(workers), "SERVING_HOST": "127.0.0.1"}
    name = f"container {workload.name}"
    if access_file:
        env["SERVING_ACCESS_FILE"] = str(access_file)
        name += " +access"
    return Target(
        name, [sys.executable, "-m", "serving"], env, "/predict", workload, API_KEY if access_file else None
    )


def uvicorn_app(name: str, app: str, workload: Workload, workers: int, path: str) -> Target:
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}"]
    command += ["--workers", str(workers), "--loop", "uvloop", "--http", "httptools"]
    command += ["--no-access-log", "--log-level", "warning"]
    return Target(name, command, workload.env(), path, workload)


def write_access_file(directory: Path) -> Path:
    """An api_key + allowlist policy ("both") with the bench key among a few others."""
    keys = [
        {
            "prefix": secret[:12],
            "hash": hashlib.sha256(secret.encode()).hexdigest(),
            "expires_at": "2999-01-01T00:00:00Z",
            "revoked": False,
        }
        for secret in [API_KEY] + [f"other-key-{index:04d}-padding-padding" for index in range(20)]
    ]
    path = directory / "access.json"
    path.write_bytes(orjson.dumps({"mode": "both", "keys": keys, "cidrs": ["10.0.0.0/8", "127.0.0.0/8"]}))
    return path


@dataclass(frozen=True)
class Result:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    failures: int
    cpu_us_per_request: float  # the server's own CPU time: steadier than req/s on a shared machine


def run_wrk(target: Target, connections: int, seconds: int, script_dir: Path) -> Result:
    extra = f'wrk.headers["x-api-key"] = "{target.api_key}"' if target.api_key else ""
    script = script_dir / f"{hashlib.sha1(target.workload.body).hexdigest()[:8]}-{bool(extra)}.lua"
    if not script.exists():
        script.write_text(LUA.format(body=target.workload.body.decode(), extra_headers=extra))
    command = [WRK, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script)]
    cpu_before = target.cpu_seconds()
    output = subprocess.run(command + [target.url], capture_output=True, text=True, check=True).stdout
    target.settle()
    cpu_used = target.cpu_seconds() - cpu_before
    line = next(line for line in output.splitlines() if line.startswith("WRK-RESULT "))
    data = orjson.loads(line.removeprefix("WRK-RESULT "))
    return Result(
        data["requests"] / (data["duration_us"] / 1e6),
        data["p50_us"] / 1000,
        data["p99_us"] / 1000,
        data["socket_errors"] + data["bad_status"],
        cpu_used / max(data["requests"], 1) * 1e6,
    )
