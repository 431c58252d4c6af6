"""The request log: a JSON line per refused request with its reason, a sampled line for successes."""

import os
import socket

import httpx
import orjson
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from serving import metrics
from serving.app import ServingApp
from serving.config import ConfigError, Feature, ModelMeta, Settings
from serving.model import Model
from serving.protocol import HttpConnection, Limits, Request, ServerState
from serving.request_log import RequestLog, log_formatter, reason_of
from serving.tests.support import IRIS_FEATURES, SETOSA


class Pipe:
    """A pipe whose read end gives the lines written to its write end."""

    def __init__(self):
        self.read_fd, self.fd = os.pipe()
        os.set_blocking(self.read_fd, False)

    def lines(self) -> list[dict]:
        try:
            data = os.read(self.read_fd, 1 << 20)
        except BlockingIOError:
            return []
        return [orjson.loads(line) for line in data.splitlines()]

    def close(self):
        os.close(self.read_fd)
        os.close(self.fd)


@pytest.fixture
def pipe():
    made = Pipe()
    yield made
    made.close()


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def request_log(pipe, **options) -> RequestLog:
    values = {"model": "iris", "version": 3, "revision": "iris-d7", "sample": 0.0, "refused_per_second": 1000}
    return RequestLog(**{**values, **options}, fd=pipe.fd)


def test_a_refusal_is_one_line_with_its_status_path_reason_latency_client_and_revision(pipe):
    log = request_log(pipe)
    log.refused(b"POST", b"/predict", 403, "address not allowed", 0.000213, "10.0.0.7")
    [line] = pipe.lines()
    assert line["time"].endswith("Z") and line["time"][:2] == "20"
    assert {key: line[key] for key in line if key != "time"} == {
        "severity": "WARNING",
        "message": "403 POST /predict: address not allowed (0.213 ms, client 10.0.0.7)",
        "status": 403,
        "method": "POST",
        "path": "/predict",
        "reason": "address not allowed",
        "latency_ms": 0.213,
        "client": "10.0.0.7",
        "model": "iris",
        "version": 3,
        "revision": "iris-d7",
    }


def test_a_server_error_is_logged_as_an_error_and_an_unparsed_request_says_so(pipe):
    log = request_log(pipe)
    log.refused(b"POST", b"/predict", 500, "The server failed to answer this request.", 0.01, "::1")
    log.refused(None, None, 400, "Malformed HTTP request: invalid method", None, "127.0.0.1")
    first, second = pipe.lines()
    assert first["severity"] == "ERROR"
    assert second["severity"] == "WARNING"
    assert (
        second["message"]
        == "400 (unparsed request): Malformed HTTP request: invalid method (client 127.0.0.1)"
    )
    assert second["latency_ms"] is None and second["path"] is None


def test_successes_are_logged_at_the_sampled_rate(pipe):
    everything = request_log(pipe, sample=1.0)
    for _ in range(3):
        everything.countdown -= 1
        if everything.countdown <= 0:
            everything.success(b"POST", b"/predict", 200, 0.0004, "127.0.0.1")
    lines = pipe.lines()
    assert [line["message"] for line in lines] == ["200 POST /predict (0.4 ms, client 127.0.0.1)"] * 3
    assert {line["severity"] for line in lines} == {"INFO"}
    assert request_log(pipe, sample=0.0).countdown > 10**15
    # One in a hundred: geometric gaps around 100, never all the same.
    sampled = request_log(pipe, sample=0.01)
    gaps = [sampled.next_countdown() for _ in range(2000)]
    assert 80 < sum(gaps) / len(gaps) < 125
    assert len(set(gaps)) > 50


def test_refusals_past_the_cap_are_counted_in_one_line_the_next_second(pipe):
    clock = Clock()
    log = RequestLog(
        model="iris", version=3, revision=None, sample=0, refused_per_second=2, fd=pipe.fd, clock=clock
    )
    for _ in range(5):
        log.refused(b"GET", b"/nope", 404, "Not found.", 0.0001, "127.0.0.1")
    assert len(pipe.lines()) == 2
    clock.now += 1.5
    log.refused(b"GET", b"/nope", 404, "Not found.", 0.0001, "127.0.0.1")
    summary, refusal = pipe.lines()
    assert summary["message"] == "3 refused requests were not logged (over 2 a second)"
    assert summary["left_out"] == 3
    assert refusal["status"] == 404


def test_the_reason_is_the_error_body_text():
    assert reason_of(b'{"error": "Send the body as JSON.", "fields": {}}') == "Send the body as JSON."
    assert reason_of(
        b'{"error": "2 fields are invalid.", "fields": {"a": "required", "b": "not a number"}}'
    ) == ("2 fields are invalid. a: required; b: not a number")
    assert reason_of(b"not json") == ""
    assert reason_of(b'{"error": ' + orjson.dumps("x" * 2000) + b"}") == "x" * 500


def test_bad_log_settings_stop_the_start(monkeypatch):
    monkeypatch.setenv("SERVING_MODEL_URI", "/tmp/model.skops")
    monkeypatch.setenv("SERVING_MODEL_META", orjson.dumps({"sha256": "0" * 64, "format": "skops"}).decode())
    monkeypatch.setenv("SERVING_LOG_SUCCESS_SAMPLE", "2")
    with pytest.raises(ConfigError, match="SERVING_LOG_SUCCESS_SAMPLE must be a fraction between 0 and 1"):
        Settings.from_env()
    monkeypatch.setenv("SERVING_LOG_SUCCESS_SAMPLE", "often")
    with pytest.raises(ConfigError, match="SERVING_LOG_SUCCESS_SAMPLE must be a number"):
        Settings.from_env()
    monkeypatch.setenv("SERVING_LOG_SUCCESS_SAMPLE", "0.5")
    monkeypatch.setenv("SERVING_REVISION", "iris-d4")
    settings = Settings.from_env()
    assert (settings.log_success_sample, settings.revision) == (0.5, "iris-d4")
    monkeypatch.setenv("SERVING_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="SERVING_LOG_FORMAT must be text or json"):
        log_formatter()


class Transport:
    def __init__(self):
        self.written = b""

    def write(self, data):
        self.written += data

    def close(self):
        pass

    def is_closing(self):
        return False

    def get_extra_info(self, name):
        return ("192.0.2.9", 40000)


@pytest.fixture(scope="module")
def app_parts():
    iris = load_iris()
    estimator = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    meta = ModelMeta("iris", 3, "0" * 64, "skops", tuple(Feature(name) for name in IRIS_FEATURES))
    model = Model.from_estimator(estimator, meta)
    model.start()
    return model


def serving_app(model, log) -> ServingApp:
    return ServingApp(
        model,
        max_rows=100,
        max_body_bytes=1000,
        access=None,
        recorder=metrics.SharedMetrics(1).recorder(0),
        render_metrics=lambda: b"",
        state=ServerState(),
        request_log=log,
    )


def test_the_app_logs_what_it_refuses_and_what_the_protocol_refuses(app_parts, pipe):
    import asyncio

    app = serving_app(app_parts, request_log(pipe))
    loop = asyncio.new_event_loop()
    try:
        connection = HttpConnection(app, app.state, Limits(1000, 5.0, 10.0, 30.0), loop)
        connection.connection_made(Transport())
        body = orjson.dumps({"sepal_length": "wide"})
        connection.data_received(
            b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        connection.data_received(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n")
    finally:
        loop.close()
    invalid, too_large = pipe.lines()
    assert invalid["status"] == 422 and invalid["path"] == "/predict" and invalid["client"] == "192.0.2.9"
    assert invalid["reason"] and invalid["reason"] in invalid["message"]
    assert invalid["latency_ms"] > 0
    assert too_large["status"] == 413
    assert too_large["reason"] == "The body is larger than 1000 bytes."
    assert too_large["method"] == "POST" and too_large["path"] == "/predict"


def test_the_app_logs_no_success_unless_sampled(app_parts, pipe):
    quiet, loud = (
        serving_app(app_parts, request_log(pipe)),
        serving_app(app_parts, request_log(pipe, sample=1.0)),
    )
    connection = type(
        "Connection",
        (),
        {"headers": [], "client": "127.0.0.1", "content_type": None, "api_key": None, "authorization": None},
    )
    for app in (quiet, loud):
        status, _, _ = app.handle(Request(b"POST", b"/predict", b"", connection, orjson.dumps(SETOSA)))
        assert status == 200
    [line] = pipe.lines()
    assert line["status"] == 200 and line["severity"] == "INFO" and line["reason"] == ""


def test_a_real_serving_process_logs_each_refusal_as_one_json_line(start_server, iris_env, tmp_path):
    env = {
        **iris_env,
        "SERVING_REVISION": "iris-d12",
        "SERVING_LOG_SUCCESS_SAMPLE": "1",
        "SERVING_WORKERS": "2",
    }
    server = start_server(env).wait_ready()
    assert httpx.post(f"{server.url}/predict", json=SETOSA).status_code == 200
    assert httpx.post(f"{server.url}/predict", json={"sepal_length": 1}).status_code == 422
    assert httpx.get(f"{server.url}/nowhere").status_code == 404
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(b"BREW /coffee HTCPCP/1.0\r\n\r\n")
        assert raw.recv(1000).startswith(b"HTTP/1.1 400")
    server.terminate()
    text = server.output()
    lines = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    by_status = {line["status"]: line for line in lines if "status" in line}
    assert set(by_status) == {200, 422, 404, 400}, text
    assert by_status[422]["revision"] == "iris-d12" and by_status[422]["model"] == "iris"
    assert "sepal_width" in by_status[422]["reason"]
    assert by_status[404]["message"].startswith("404 GET /nowhere: Not found.")
    assert by_status[400]["reason"].startswith("Malformed HTTP request")
    # The process's other lines start with the time in UTC.
    others = [line for line in text.splitlines() if line and not line.startswith("{")]
    assert others and all(line[:4].isdigit() and line[10] == "T" for line in others[:3]), others[:3]


def test_the_time_is_rfc3339_in_utc_to_the_microsecond():
    from datetime import UTC, datetime

    from serving.request_log import utc_now

    text = utc_now()
    assert len(text) == len("2026-12-06T03:47:37.123456Z") and text.endswith("Z")
    written = datetime.fromisoformat(text.removesuffix("Z") + "+00:00")
    assert abs((datetime.now(UTC) - written).total_seconds()) < 5
