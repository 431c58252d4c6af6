"""Micro-batching (SERVING_MICROBATCH=on): the same bytes as without it, in the same order.

A small forest (answered by ONNX Runtime, no one-row kernel) is served twice, with micro-batching
off and on. Requests are sent over many connections at once, several pipelined on each, so that
many single rows arrive within one event-loop iteration and are answered by one model call.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import httpx
import numpy as np
import orjson
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from serving import metrics
from serving.app import ServingApp
from serving.batching import MicroBatch
from serving.config import Feature, ModelMeta
from serving.model import Model
from serving.protocol import Request, ServerState
from serving.tests.support import IRIS_FEATURES, IRIS_LABELS, SETOSA, Server, stop_all, write_model

CONNECTIONS = 64
PER_CONNECTION = 8
MODES = (None, "label", "probabilities", "both")


def http(method: str, path: str, body: bytes | None = None, *, close: bool = False, **headers) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def post(body, query: str = "", content_type: str = "application/json", **options) -> bytes:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return http("POST", "/predict" + query, data, content_type=content_type, **options)


def one_row_request(index: int, row: list[float]) -> tuple[bytes, int]:
    """A valid one-row /predict request in one of the forms and return modes; (request, rows)."""
    named = dict(zip(IRIS_FEATURES, row, strict=True))
    form = [named, {"inputs": [row]}, {"instances": [row]}, {"instances": [named]}][index % 4]
    mode = MODES[(index // 4) % len(MODES)]
    if mode is None:
        return post(form), 1
    if index % 2:
        return post({**form, "return": mode}), 1
    return post(form, query=f"?return={mode}"), 1


def mixed_requests(count: int, seed: int) -> list[tuple[bytes, int]]:
    """Mostly valid one-row predictions, with errors and other routes among them."""
    rng = np.random.default_rng(seed)
    data = load_iris().data
    requests = []
    for index in range(count):
        row = (data[rng.integers(len(data))] + rng.normal(0, 0.3, 4)).round(2).tolist()
        kind = rng.integers(12)
        if kind == 0:
            bad = dict(zip(IRIS_FEATURES, row, strict=True))
            del bad["petal_width"]
            requests.append((post(bad), 0))  # 422, missing feature
        elif kind == 1:
            requests.append((post(b'{"inputs": [[1, 2, 3, NaN]]}'), 0))  # 422, not finite
        elif kind == 2:
            requests.append((post(b'{"sepal_length": 5.1,'), 0))  # 400, malformed JSON
        elif kind == 3:
            requests.append((post({"inputs": [row], "return": "everything"}), 0))  # 422, bad mode
        elif kind == 4:
            requests.append((post({"inputs": [row]}, content_type="text/plain"), 0))  # 415
        elif kind == 5:
            requests.append((post({"inputs": [row, row[::-1]], "return": "both"}), 2))  # unbatched path
        elif kind == 6:
            requests.append((http("GET", "/healthz"), 0))
        elif kind == 7:
            requests.append((http("HEAD", "/v1/model"), 0))
        else:
            requests.append(one_row_request(index, row))
    return requests


def read_responses(sock: socket.socket, requests: list[bytes]) -> list[bytes]:
    """Read one response per request (or until the server closes), each without its date header."""
    data, responses = b"", []
    while len(responses) < len(requests):
        end = data.find(b"\r\n\r\n")
        if end < 0:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            continue
        head = data[: end + 4]
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        if requests[len(responses)].startswith(b"HEAD "):
            length = 0
        while len(data) < end + 4 + length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"date:")]
        responses.append(b"\r\n".join(lines) + data[end + 4 : end + 4 + length])
        data = data[end + 4 + length :]
    return responses


def exchange(server: Server, batches: list[list[bytes]]) -> list[list[bytes]]:
    """Open one connection per batch, send every batch pipelined, all at once; read every answer."""
    sockets = [socket.create_connection(("127.0.0.1", server.port), timeout=15) for _ in batches]
    try:
        for sock, batch in zip(sockets, batches, strict=True):
            sock.sendall(b"".join(batch))
        return [read_responses(sock, batch) for sock, batch in zip(sockets, batches, strict=True)]
    finally:
        for sock in sockets:
            sock.close()


@contextlib.contextmanager
def companions(server: Server, count: int = 5):
    """Other open connections (a worker with a single connection answers at once, unbatched)."""
    sockets = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(count)]
    try:
        for sock in sockets:
            sock.sendall(http("GET", "/healthz"))
            assert read_responses(sock, [b"GET"])[0].endswith(b'{"status":"alive"}')
        yield
    finally:
        for sock in sockets:
            sock.close()


def metric(server: Server, prefix: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def batches_over_one_row(server: Server) -> float:
    """Model calls on more than one row so far."""
    one_row = 'serving_batch_rows_bucket{model="forest",model_version="3",le="1"}'
    return metric(server, "serving_batch_rows_count") - metric(server, one_row)


@pytest.fixture(scope="module")
def forest_env(model_dir) -> dict:
    iris = load_iris()
    estimator = RandomForestClassifier(n_estimators=10, random_state=0).fit(iris.data, iris.target)
    return write_model(model_dir, "forest", estimator, IRIS_FEATURES, IRIS_LABELS)


@pytest.fixture(scope="module")
def servers(forest_env, tmp_path_factory):
    """The forest without and with micro-batching (small batches, so several calls per iteration)."""
    directory = tmp_path_factory.mktemp("microbatch")
    common = {**forest_env, "SERVING_WORKERS": "2"}
    off = Server({**common, "SERVING_MICROBATCH": "off"}, directory / "off.log")
    on = Server(
        {**common, "SERVING_MICROBATCH": "on", "SERVING_MICROBATCH_MAX_ROWS": "16"}, directory / "on.log"
    )
    try:
        yield off.wait_ready(), on.wait_ready()
    finally:
        stop_all([off, on])


def test_the_forest_is_micro_batched_by_default_and_the_linear_model_is_not(
    servers, forest_env, iris_env, start_server
):
    assert "Micro-batching single rows: up to 16 rows" in servers[1].output()
    assert "Micro-batching" not in servers[0].output()
    default = start_server({**forest_env, "SERVING_WORKERS": "1"}).wait_ready()
    assert (
        "Micro-batching single rows: up to 64 rows, waiting for the event-loop iteration." in default.output()
    )
    iris = start_server({**iris_env, "SERVING_MICROBATCH": "on"}).wait_ready()
    assert "Micro-batching not used: the one-row kernel answers single rows faster." in iris.output()
    assert httpx.post(f"{iris.url}/predict", json=SETOSA).json()["target"] == "setosa"


def test_concurrent_single_rows_get_exactly_the_unbatched_answers(servers):
    off, on = servers
    requests = mixed_requests(CONNECTIONS * PER_CONNECTION, seed=1)
    batches = [
        [request for request, _ in requests[start : start + PER_CONNECTION]]
        for start in range(0, len(requests), PER_CONNECTION)
    ]
    batched_before = batches_over_one_row(on)
    rows_before = [metric(server, "serving_rows_predicted_total") for server in servers]
    expected = exchange(off, batches)
    answered = exchange(on, batches)
    assert [len(responses) for responses in answered] == [PER_CONNECTION] * CONNECTIONS
    assert answered == expected
    statuses = {response.split(b" ", 2)[1] for responses in expected for response in responses}
    assert {b"200", b"400", b"415", b"422"} <= statuses
    # Every valid row was counted once (a named row too), and some model calls answered several requests.
    for server, before in zip(servers, rows_before, strict=True):
        assert metric(server, "serving_rows_predicted_total") - before == sum(rows for _, rows in requests)
    assert batches_over_one_row(on) > batched_before


def test_pipelined_requests_on_one_connection_come_back_in_order(servers):
    off, on = servers
    requests = [request for request, _ in mixed_requests(40, seed=2)]
    requests.insert(5, http("HEAD", "/predict"))  # 405, no body
    requests.insert(9, post(b'{"inputs": []}'))
    expected = exchange(off, [requests])
    with companions(on):
        answered = exchange(on, [requests])
    assert len(answered[0]) == len(requests)
    assert answered == expected
    assert answered[0][5].startswith(b"HTTP/1.1 405") and answered[0][5].endswith(b"\r\n\r\n")


def test_a_connection_close_among_pipelined_rows_ends_the_connection_after_its_answer(servers):
    off, on = servers
    row = [6.7, 3.0, 5.2, 2.3]
    requests = [post({"inputs": [row]}), post({"inputs": [row]}, close=True), http("GET", "/healthz")]
    for server in servers:
        with companions(server), socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"".join(requests))
            answers = read_responses(sock, requests)
            assert sock.recv(65536) == b""  # closed: the third request is not answered
        assert len(answers) == 2
        assert b"connection: close" not in answers[0] and b"connection: close" in answers[1]
        assert answers[0].endswith(b'{"predictions":["virginica"]}') and answers[1].endswith(
            b'{"predictions":["virginica"]}'
        )


def test_a_draining_server_answers_the_queued_rows_in_order_and_exits(forest_env, start_server):
    server = start_server({**forest_env, "SERVING_MICROBATCH": "on", "SERVING_WORKERS": "1"}).wait_ready()
    requests = [one_row_request(index, [5.0 + index / 10, 3.0, 4.0, 1.0])[0] for index in range(30)]
    reference = start_server({**forest_env, "SERVING_MICROBATCH": "off", "SERVING_WORKERS": "1"}).wait_ready()
    expected = exchange(reference, [requests])[0]
    with companions(server, 1), socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(requests[0])
        assert read_responses(sock, requests[:1]) == expected[:1]
        sock.sendall(b"".join(requests[1:]))
        server.signal_stop()
        answers = read_responses(sock, requests[1:])
    # However the signal fell, what was answered is right and in order; the server leaves cleanly.
    assert answers and answers == expected[1 : 1 + len(answers)]
    assert server.exit_code(timeout=15) == 0


def test_a_regressor_gives_the_same_values_and_refuses_probabilities(model_dir, start_server):
    diabetes = load_diabetes()
    features = [f"x{index}" for index in range(diabetes.data.shape[1])]
    estimator = RandomForestRegressor(n_estimators=5, random_state=0).fit(diabetes.data, diabetes.target)
    env = {**write_model(model_dir, "sugar", estimator, features), "SERVING_WORKERS": "1"}
    off = start_server({**env, "SERVING_MICROBATCH": "off"})
    on = start_server({**env, "SERVING_MICROBATCH": "on"})
    off.wait_ready(), on.wait_ready()
    requests = []
    for index, row in enumerate(diabetes.data[:48].round(4).tolist()):
        body = dict(zip(features, row, strict=True)) if index % 2 else {"inputs": [row]}
        requests.append(post(body, query="?return=probabilities" if index % 12 == 5 else ""))
    batches = [requests[start : start + 4] for start in range(0, len(requests), 4)]
    expected = exchange(off, batches)
    assert exchange(on, batches) == expected
    assert sum(response.startswith(b"HTTP/1.1 422") for group in expected for response in group) == 4


def test_a_bad_setting_refuses_to_start(forest_env, start_server):
    server = start_server({**forest_env, "SERVING_MICROBATCH": "yes"})
    assert server.exit_code() == 2
    assert "SERVING_MICROBATCH must be on or off" in server.output()


class FakeConnection:
    """Stands in for the protocol's connection: collects what the app delivers."""

    headers: list = []
    client = "127.0.0.1"
    content_type = b"application/json"
    api_key = None
    authorization = None

    def __init__(self):
        self.delivered = []

    def deliver(self, request, response) -> None:
        self.delivered.append((request, response))


def test_a_model_failure_in_a_batch_fails_only_the_rows_that_fail_alone():
    """In process: a row the model cannot take gets a 500; the rest of its batch their answers."""
    iris = load_iris()
    estimator = RandomForestClassifier(n_estimators=5, random_state=0).fit(iris.data, iris.target)
    meta = ModelMeta("forest", 1, "0" * 64, "skops", tuple(Feature(name) for name in IRIS_FEATURES))
    model = Model.from_estimator(estimator, meta)
    model.start()
    both_for, labels_for = model.both_for, model.labels_for

    def refusing(method):
        def predict(rows):
            if (rows == 99.0).any():
                raise RuntimeError("the model cannot take 99")
            return method(rows)

        return predict

    model.both_for, model.labels_for = refusing(both_for), refusing(labels_for)

    def app(microbatch):
        shared = metrics.SharedMetrics(1)
        state = ServerState()
        state.connections.update({FakeConnection(), FakeConnection()})  # others to batch with
        return ServingApp(
            model,
            max_rows=100,
            max_body_bytes=100_000,
            access=None,
            recorder=shared.recorder(0),
            render_metrics=lambda: b"",
            state=state,
            microbatch=microbatch,
        )

    plain, batched, connection = app(None), app(MicroBatch(8, 0.0)), FakeConnection()
    bodies = [
        orjson.dumps({"inputs": [[5.1, 3.5, 1.4 + index / 10, 0.2]], "return": MODES[index % 4] or "both"})
        for index in range(12)
    ]
    bodies[3] = orjson.dumps(
        {"sepal_length": 99.0, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    )
    bodies[9] = orjson.dumps({"inputs": [[5.1, 99.0, 1.4, 0.2]], "return": "label"})

    def request(body):
        return Request(b"POST", b"/predict", b"", connection, body)

    async def run():
        answers = [batched.handle(request(body)) for body in bodies]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return answers

    assert asyncio.run(run()) == [None] * len(bodies)
    delivered = {request.body: response for request, response in connection.delivered}
    assert len(delivered) == len(bodies)
    for index, body in enumerate(bodies):
        expected = plain.handle(request(body))
        assert delivered[body] == expected
        assert expected[0] == (500 if index in (3, 9) else 200)


def test_a_row_too_large_for_the_model_gets_its_422_and_its_batch_mates_their_answers(
    model_dir, start_server
):
    """GaussianNB, served by scikit-learn, batches exactly; at 1e308 its likelihoods overflow."""
    from sklearn.naive_bayes import GaussianNB

    iris = load_iris()
    env = write_model(model_dir, "nb", GaussianNB().fit(iris.data, iris.target), IRIS_FEATURES, IRIS_LABELS)
    common = {**env, "SERVING_WORKERS": "1", "SERVING_ACCELERATE": "false"}
    on = start_server({**common, "SERVING_MICROBATCH": "on"}).wait_ready()
    off = start_server({**common, "SERVING_MICROBATCH": "off"}).wait_ready()
    assert "Micro-batching single rows" in on.output()
    rows = [row.tolist() for row in iris.data[::10]]
    rows[3] = [1.7e308, 3.0, 4.0, 1.0]
    requests = [one_row_request(index, row)[0] for index, row in enumerate(rows)]
    expected = exchange(off, [requests])[0]
    batched = metric(on, "serving_batch_rows_count")
    with companions(on):
        answered = exchange(on, [requests])[0]
    assert answered == expected
    assert answered[3].startswith(b"HTTP/1.1 422") and b"too large for this model" in answered[3]
    assert all(answer.startswith(b"HTTP/1.1 200") for index, answer in enumerate(answered) if index != 3)
    assert metric(on, "serving_batch_rows_count") > batched
    assert "Traceback" not in on.output()
