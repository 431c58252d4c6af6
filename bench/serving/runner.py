"""Start the servers under test and load them with wrk; measure the access check in-process.

`python -m bench.serving.runner access-cost ACCESS_FILE BODY_FILE ROUNDS`, with the workload's
SERVING_MODEL_URI and SERVING_MODEL_META in the environment, is the child process `access_cost` runs.
"""

from __future__ import annotations

import gc
import hashlib
import os
import signal
import socket
import statistics
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
local file = io.open("{body_path}", "rb")
wrk.body = file:read("*a")
file:close()
{headers}
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
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self, log_dir: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "PORT": str(self.port), **self.env}
        command = [arg.replace("{port}", str(self.port)) for arg in self.command]
        self.log_path = log_dir / f"{self.name.replace(' ', '-')}.log"
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        headers = {**dict(self.workload.headers), **({"x-api-key": self.api_key} if self.api_key else {})}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail}")
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
        name,
        [sys.executable, "-m", "serving"],
        env,
        workload.route,
        workload,
        API_KEY if access_file else None,
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


def start_all(targets, directory: Path) -> None:
    """Start every target, wait until each answers its workload, and warm each up under wrk."""
    for target in targets:
        target.start(directory)
    for target in targets:
        target.wait_ready()
    for target in targets:
        run_wrk(target, 16, 1, directory)


def run_wrk(target: Target, connections: int, seconds: int, script_dir: Path) -> Result:
    headers = [*target.workload.headers, *([("x-api-key", target.api_key)] if target.api_key else [])]
    name = f"{hashlib.sha1(target.workload.body).hexdigest()[:8]}-{bool(target.api_key)}"
    script, body = script_dir / f"{name}.lua", script_dir / f"{name}.body"
    if not script.exists():
        body.write_bytes(target.workload.body)
        lines = "\n".join(f'wrk.headers["{header}"] = "{value}"' for header, value in headers)
        script.write_text(LUA.format(body_path=body, headers=lines))
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


# The access check in-process: the real protocol and app, fed the bytes wrk sends, timed in CPU.

ACCESS_ARMS = ("plain", "plain + key header", "checked")


@dataclass(frozen=True)
class AccessCost:
    plain_us: float  # CPU for one request through protocol + app, no access file, no key header
    total_us: float  # what the access file plus the key header add (median of per-round differences)
    header_us: float  # of which: parsing the x-api-key header
    check_us: float  # of which: AccessControl.check (a valid, cached key; an allowed address)
    spread_us: float  # half the interquartile range of the per-round total differences


def wrk_request(body: bytes, api_key: str | None, port: int = 8080) -> bytes:
    """The request wrk sends with the bench's Lua script (header order aside)."""
    head = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n" % port
    if api_key:
        head += b"x-api-key: %s\r\n" % api_key.encode()
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def access_cost(workload: Workload, access_file: Path, directory: Path, rounds: int = 60) -> AccessCost:
    """Run the in-process measurement in a fresh process (like a worker: model loaded, gc frozen)."""
    body = directory / "access-cost-body.json"
    body.write_bytes(workload.body)
    command = [sys.executable, "-m", "bench.serving.runner", "access-cost", str(access_file), str(body)]
    command.append(str(rounds))
    env = {**os.environ, "PYTHONPATH": str(REPO), **workload.env()}
    output = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=True).stdout
    return AccessCost(**orjson.loads(output.strip().splitlines()[-1]))


class _Transport:
    """Enough of an asyncio transport for HttpConnection: keeps the last answer written."""

    def __init__(self):
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written = data

    def get_extra_info(self, name: str, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        raise RuntimeError("the connection was closed: the request was not answered normally")

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _measure_access_cost(access_file: str, body: bytes, rounds: int, per_block: int = 400) -> AccessCost:
    """Rounds of three blocks (no file + no header, no file + header, file + header), in rotating
    order; each block is `per_block` requests on one keep-alive connection, timed in thread CPU
    time. The medians of the per-round differences are the costs."""
    import uvloop

    from serving import metrics
    from serving.access import AccessControl
    from serving.app import ServingApp
    from serving.config import ModelMeta
    from serving.model import Model, load_estimator
    from serving.protocol import HttpConnection, Limits, ServerState

    meta = ModelMeta.from_json(os.environ["SERVING_MODEL_META"])
    estimator = load_estimator(Path(os.environ["SERVING_MODEL_URI"]), meta.format, meta.trusted_types)
    model = Model.from_estimator(estimator, meta)
    model.start()
    shared = metrics.SharedMetrics(1)
    loop = uvloop.new_event_loop()

    def connection(access):
        state = ServerState()
        app = ServingApp(
            model,
            max_rows=10_000,
            max_body_bytes=1 << 24,
            access=access,
            recorder=shared.recorder(0),
            render_metrics=lambda: b"",
            state=state,
        )
        made = HttpConnection(app, state, Limits(1 << 24, 5.0, 10.0, 30.0), loop)
        made.connection_made(_Transport())
        return made

    arms = {
        "plain": (connection(None), wrk_request(body, None)),
        "plain + key header": (connection(None), wrk_request(body, API_KEY)),
        "checked": (connection(AccessControl(access_file)), wrk_request(body, API_KEY)),
    }
    for made, request in arms.values():
        made.data_received(request)
        if not made.transport.written.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"not answered 200: {made.transport.written[:200]!r}")
    gc.collect()
    gc.freeze()

    def block(made, request) -> float:
        feed = made.data_received
        started = time.thread_time_ns()
        for _ in range(per_block):
            feed(request)
        return (time.thread_time_ns() - started) / per_block / 1000

    for made, request in arms.values():  # warm-up
        block(made, request)
    timings: dict[str, list[float]] = {arm: [] for arm in ACCESS_ARMS}
    for index in range(rounds):
        shift = index % len(ACCESS_ARMS)
        for arm in ACCESS_ARMS[shift:] + ACCESS_ARMS[:shift]:
            timings[arm].append(block(*arms[arm]))
    plain, header, checked = (timings[arm] for arm in ACCESS_ARMS)
    totals = [c - p for c, p in zip(checked, plain, strict=True)]
    quartiles = statistics.quantiles(totals, n=4)
    return AccessCost(
        plain_us=statistics.median(plain),
        total_us=statistics.median(totals),
        header_us=statistics.median([h - p for h, p in zip(header, plain, strict=True)]),
        check_us=statistics.median([c - h for c, h in zip(checked, header, strict=True)]),
        spread_us=(quartiles[2] - quartiles[0]) / 2,
    )


if __name__ == "__main__":
    if sys.argv[1:2] != ["access-cost"]:
        raise SystemExit(__doc__)
    path, body_path, rounds = sys.argv[2], sys.argv[3], int(sys.argv[4])
    cost = _measure_access_cost(path, Path(body_path).read_bytes(), rounds)
    print(orjson.dumps(cost.__dict__).decode())
