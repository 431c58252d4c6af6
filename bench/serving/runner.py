"""Start the servers under test and load them with wrk; measure the access checks in-process.

`python -m bench.serving.runner access-cost ACCESS_FILE BODY_FILE ROUNDS` and
`python -m bench.serving.runner identity-cost KEY_FILE IDENTITY_FILE TOKEN_FILE BODY_FILE ROUNDS`,
with the workload's SERVING_MODEL_URI and SERVING_MODEL_META in the environment, are the child
processes `access_cost` and `identity_cost` run.
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
    extra_headers: tuple[tuple[str, str], ...] = ()  # sent with every request (a bearer token)
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
        headers = {**dict(self.headers())}
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

    def headers(self) -> list[tuple[str, str]]:
        key = [("x-api-key", self.api_key)] if self.api_key else []
        return [*self.workload.headers, *key, *self.extra_headers]

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


def container(
    workload: Workload, workers: int, access_file: Path | None = None, bearer: str | None = None
) -> Target:
    """The serving container; with an access file, requests carry the bench key, or `bearer` as
    an Authorization header instead."""
    env = {**workload.env(), "SERVING_WORKERS": str(workers), "SERVING_HOST": "127.0.0.1"}
    name = f"container {workload.name}"
    if access_file:
        env["SERVING_ACCESS_FILE"] = str(access_file)
        name += f" +{access_file.stem.removeprefix('access-')}"
    return Target(
        name,
        [sys.executable, "-m", "serving"],
        env,
        workload.route,
        workload,
        API_KEY if access_file and not bearer else None,
        (("Authorization", f"Bearer {bearer}"),) if bearer else (),
    )


def uvicorn_app(name: str, app: str, workload: Workload, workers: int, path: str) -> Target:
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}"]
    command += ["--workers", str(workers), "--loop", "uvloop", "--http", "httptools"]
    command += ["--no-access-log", "--log-level", "warning"]
    return Target(name, command, workload.env(), path, workload)


def write_access_file(directory: Path, mode: str = "both") -> Path:
    """An api_key + allowlist policy ("both", or `mode`) with the bench key among a few others."""
    keys = [
        {
            "prefix": secret[:12],
            "hash": hashlib.sha256(secret.encode()).hexdigest(),
            "expires_at": "2999-01-01T00:00:00Z",
            "revoked": False,
        }
        for secret in [API_KEY] + [f"other-key-{index:04d}-padding-padding" for index in range(20)]
    ]
    path = directory / f"access-{mode}.json"
    path.write_bytes(orjson.dumps({"mode": mode, "keys": keys, "cidrs": ["10.0.0.0/8", "127.0.0.0/8"]}))
    return path


def write_identity_file(directory: Path, identity: dict) -> Path:
    """An identity policy (issuer, audience, JWKS URL) beside the same keys, which it does not use."""
    path = directory / "access-identity.json"
    path.write_bytes(orjson.dumps({"mode": "identity", "identity": identity}))
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
    headers = target.headers()
    name = hashlib.sha1(target.workload.body + repr(headers).encode()).hexdigest()[:12]
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


@dataclass(frozen=True)
class IdentityCost:
    plain_us: float  # CPU for one request through protocol + app, no access file, no credential
    key_us: float  # what an API key policy and its x-api-key header add (median of per-round differences)
    jwt_us: float  # what an identity policy and its Authorization: Bearer header add (a verified token)
    jwt_over_key: float  # a JWT request's CPU over an API-key request's (median of per-round ratios)
    spread_us: float  # half the interquartile range of the per-round JWT differences


def wrk_request(body: bytes, api_key: str | None, port: int = 8080, bearer: str | None = None) -> bytes:
    """The request wrk sends with the bench's Lua script (header order aside)."""
    head = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n" % port
    if api_key:
        head += b"x-api-key: %s\r\n" % api_key.encode()
    if bearer:
        head += b"Authorization: Bearer %s\r\n" % bearer.encode()
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def _in_process(workload: Workload, directory: Path, *arguments: str) -> dict:
    """Run an in-process measurement in a fresh process (like a worker: model loaded, gc frozen)."""
    body = directory / "access-cost-body.json"
    body.write_bytes(workload.body)
    command = [sys.executable, "-m", "bench.serving.runner", *arguments[:-1], str(body), arguments[-1]]
    env = {**os.environ, "PYTHONPATH": str(REPO), **workload.env()}
    output = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=True).stdout
    return orjson.loads(output.strip().splitlines()[-1])


def access_cost(workload: Workload, access_file: Path, directory: Path, rounds: int = 60) -> AccessCost:
    return AccessCost(**_in_process(workload, directory, "access-cost", str(access_file), str(rounds)))


def identity_cost(
    workload: Workload, key_file: Path, identity_file: Path, token: str, directory: Path, rounds: int = 60
) -> IdentityCost:
    """A one-row request with an API key (api_key policy) against the same with a verified JWT
    (identity policy whose JWKS the caller serves), in the same process, in rotating order."""
    token_file = directory / "identity-token"
    token_file.write_text(token)
    arguments = ("identity-cost", str(key_file), str(identity_file), str(token_file), str(rounds))
    return IdentityCost(**_in_process(workload, directory, *arguments))


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


def _time_arms(arms: dict[str, tuple[str | None, bytes]], rounds: int, per_block: int = 400) -> dict:
    """Each arm (an access file or none, the request's bytes) timed in rounds of one block each, in
    rotating order; a block is `per_block` requests on one keep-alive connection, timed in thread
    CPU time (us per request). The real protocol and app answer, with the workload's model."""
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

    def connection(access_file):
        state = ServerState()
        app = ServingApp(
            model,
            max_rows=10_000,
            max_body_bytes=1 << 24,
            access=AccessControl(access_file) if access_file else None,
            recorder=shared.recorder(0),
            render_metrics=lambda: b"",
            state=state,
        )
        made = HttpConnection(app, state, Limits(1 << 24, 5.0, 10.0, 30.0), loop)
        made.connection_made(_Transport())
        return made

    made = {arm: (connection(access_file), request) for arm, (access_file, request) in arms.items()}
    for connected, request in made.values():
        connected.data_received(request)
        if not connected.transport.written.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"not answered 200: {connected.transport.written[:300]!r}")
    gc.collect()
    gc.freeze()

    def block(connected, request) -> float:
        feed = connected.data_received
        started = time.thread_time_ns()
        for _ in range(per_block):
            feed(request)
        return (time.thread_time_ns() - started) / per_block / 1000

    for connected, request in made.values():  # warm-up
        block(connected, request)
    names = list(arms)
    timings: dict[str, list[float]] = {arm: [] for arm in names}
    for index in range(rounds):
        shift = index % len(names)
        for arm in names[shift:] + names[:shift]:
            timings[arm].append(block(*made[arm]))
    return timings


def _differences(arm: list[float], reference: list[float]) -> list[float]:
    return [a - r for a, r in zip(arm, reference, strict=True)]


def _half_iqr(values: list[float]) -> float:
    quartiles = statistics.quantiles(values, n=4)
    return (quartiles[2] - quartiles[0]) / 2


def _measure_access_cost(access_file: str, body: bytes, rounds: int) -> AccessCost:
    """No file + no header, no file + header, file + header: the medians of the per-round
    differences are the costs."""
    timings = _time_arms(
        {
            "plain": (None, wrk_request(body, None)),
            "plain + key header": (None, wrk_request(body, API_KEY)),
            "checked": (access_file, wrk_request(body, API_KEY)),
        },
        rounds,
    )
    plain, header, checked = timings.values()
    totals = _differences(checked, plain)
    return AccessCost(
        plain_us=statistics.median(plain),
        total_us=statistics.median(totals),
        header_us=statistics.median(_differences(header, plain)),
        check_us=statistics.median(_differences(checked, header)),
        spread_us=_half_iqr(totals),
    )


def _measure_identity_cost(
    key_file: str, identity_file: str, token: str, body: bytes, rounds: int
) -> IdentityCost:
    timings = _time_arms(
        {
            "plain": (None, wrk_request(body, None)),
            "api key": (key_file, wrk_request(body, API_KEY)),
            "jwt": (identity_file, wrk_request(body, None, bearer=token)),
        },
        rounds,
    )
    plain, key, jwt = timings.values()
    return IdentityCost(
        plain_us=statistics.median(plain),
        key_us=statistics.median(_differences(key, plain)),
        jwt_us=statistics.median(_differences(jwt, plain)),
        jwt_over_key=statistics.median([j / k for j, k in zip(jwt, key, strict=True)]),
        spread_us=_half_iqr(_differences(jwt, plain)),
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["access-cost"]:
        path, body_path, rounds = sys.argv[2], sys.argv[3], int(sys.argv[4])
        measured = _measure_access_cost(path, Path(body_path).read_bytes(), rounds).__dict__
    elif sys.argv[1:2] == ["identity-cost"]:
        key_file, identity_file, token_file, body_path, rounds = sys.argv[2:7]
        token = Path(token_file).read_text().strip()
        body = Path(body_path).read_bytes()
        measured = _measure_identity_cost(key_file, identity_file, token, body, int(rounds)).__dict__
    else:
        raise SystemExit(__doc__)
    print(orjson.dumps(measured).decode())
