"""Run the real server (`python -m serving`) as a subprocess against real model files."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from serving.control import ControlError, send_command

REPO = Path(__file__).resolve().parents[2]
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_LABELS = {"0": "setosa", "1": "versicolor", "2": "virginica"}
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
VIRGINICA = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}


def versions_answering(url: str, count: int) -> Counter:
    """Which model version answered each of `count` `/v1/model` requests, half of them on fresh
    connections and half on one kept alive (a split must hold for both)."""
    parts = urlsplit(url)
    seen: Counter = Counter()
    kept = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        for n in range(count):
            fresh = None if n % 2 else http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            connection = fresh or kept
            connection.request("GET", "/v1/model")
            answer = connection.getresponse()
            body = answer.read()
            assert answer.status == 200, body
            seen[json.loads(body)["version"]] += 1
            if fresh:
                fresh.close()
    finally:
        kept.close()
    return seen


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_model(directory: Path, name: str, estimator, features: list[str], label_map=None, **meta) -> dict:
    """Save `estimator` as a .skops file; return the env that serves it."""
    import skops.io as sio

    data = sio.dumps(estimator)
    path = directory / f"{name}.skops"
    path.write_bytes(data)
    classes = [value.item() for value in getattr(estimator, "classes_", [])]
    document = {
        "name": name,
        "version": 3,
        "sha256": hashlib.sha256(data).hexdigest(),
        "format": "skops",
        "schema": [{"name": feature, "type": "number"} for feature in features],
        "classes": classes,
        "label_map": label_map or {},
        "trusted_types": sio.get_untrusted_types(data=data),
        **meta,
    }
    import orjson

    return {"SERVING_MODEL_URI": str(path), "SERVING_MODEL_META": orjson.dumps(document).decode()}


class Server:
    """One `python -m serving` process and the URL it answers on."""

    def __init__(self, env: dict, log_path: Path, port: int | None = None, host: str = "127.0.0.1"):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {
            **os.environ,
            "PORT": str(self.port),
            "SERVING_HOST": host,
            "SERVING_WORKERS": "1",
            "PYTHONPATH": str(REPO),
            **env,
        }
        self.control = full_env.get("SERVING_CONTROL_SOCKET")
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving"],
            env=full_env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> Server:
        """Wait until the server answers /readyz (or, with a control socket, reports ready)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if self.control:
                    if send_command(self.control, {"cmd": "status"}, timeout=1.0)["ready"]:
                        return self
                elif httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except (ControlError, httpx.HTTPError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.output()}")

    def command(self, name: str) -> dict:
        return send_command(self.control, {"cmd": name})

    def signal_stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def terminate(self, timeout: float = 9.0) -> int:
        self.signal_stop()
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.log.close()

    def exit_code(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout)
        self.log.close()
        return code


def stop_all(servers) -> None:
    """Stop several servers at once (they drain in parallel)."""
    for server in servers:
        server.signal_stop()
    for server in servers:
        server.terminate()
