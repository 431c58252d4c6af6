"""Request forms, return modes, errors and metrics, against one running iris server (2 workers).

The batch shortcut (simdjson) is also checked in-process against the detailed path, body by body.
"""

import random
import socket
import time

import httpx
import numpy as np
import orjson
import pytest

from serving import validation
from serving.config import Feature
from serving.tests.support import SETOSA, VIRGINICA, Server
from serving.validation import RequestError, Validator

LABELS = ["setosa", "versicolor", "virginica"]


@pytest.fixture(scope="module")
def server(iris_env, tmp_path_factory):
    env = {
        **iris_env,
        "SERVING_WORKERS": "2",
        "SERVING_MAX_BODY_BYTES": "20000",
        "SERVING_MAX_ROWS": "50",
        "SERVING_HEADER_TIMEOUT": "1",
    }
    running = Server(env, tmp_path_factory.mktemp("predictions") / "server.log").wait_ready()
    yield running
    assert running.terminate() == 0


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as session:
        yield session


def predict(client, body, **params):
    return client.post("/predict", json=body, params=params)


def test_the_welcome_page_names_the_model_and_its_version(client):
    answer = client.get("/").json()
    assert (answer["model"], answer["version"]) == ("iris", 3)


def test_liveness_and_readiness_answer(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_model_info_gives_schema_classes_labels_version_and_sha256(client, iris_env):
    info = client.get("/v1/model").json()
    assert [feature["name"] for feature in info["schema"]] == list(SETOSA)
    assert info["classes"] == [0, 1, 2]
    assert info["label_map"] == {"0": "setosa", "1": "versicolor", "2": "virginica"}
    assert info["version"] == 3
    assert info["sha256"] in iris_env["SERVING_MODEL_META"]


def test_a_named_feature_row_returns_each_probability_and_the_target(client):
    answer = predict(client, SETOSA).json()
    assert list(answer) == [f"{label}_probability" for label in LABELS] + ["target"]
    assert answer["target"] == "setosa"
    assert answer["setosa_probability"] > 0.9
    assert sum(answer[f"{label}_probability"] for label in LABELS) == pytest.approx(1.0)


@pytest.mark.parametrize("where", ["body", "query"])
def test_a_named_feature_row_can_ask_for_the_label_only(client, where):
    if where == "body":
        response = predict(client, {**VIRGINICA, "return": "label"})
    else:
        response = predict(client, VIRGINICA, **{"return": "label"})
    assert response.json() == {"target": "virginica"}


def test_a_named_feature_row_can_ask_for_probabilities_only(client):
    answer = predict(client, {**SETOSA, "return": "probabilities"}).json()
    assert list(answer) == [f"{label}_probability" for label in LABELS]


def test_an_inputs_batch_returns_labels_by_default(client):
    rows = [list(SETOSA.values()), list(VIRGINICA.values())]
    assert predict(client, {"inputs": rows}).json() == {"predictions": ["setosa", "virginica"]}


def test_an_inputs_batch_can_return_probabilities_in_class_order(client):
    rows = [list(SETOSA.values()), list(VIRGINICA.values())]
    answer = predict(client, {"inputs": rows, "return": "probabilities"}).json()
    assert [list(row) for row in answer["predictions"]] == [LABELS, LABELS]
    assert answer["predictions"][0]["setosa"] > 0.9
    assert answer["predictions"][1]["virginica"] > 0.5


def test_an_inputs_batch_can_return_both(client):
    rows = [list(SETOSA.values())]
    answer = predict(client, {"inputs": rows}, **{"return": "both"}).json()
    assert answer["predictions"] == ["setosa"]
    assert answer["probabilities"][0]["setosa"] > 0.9


def test_instances_take_rows_as_lists_or_as_named_objects(client):
    assert predict(client, {"instances": [list(SETOSA.values())]}).json() == {"predictions": ["setosa"]}
    assert predict(client, {"instances": [SETOSA, VIRGINICA]}).json() == {
        "predictions": ["setosa", "virginica"]
    }


def test_integers_are_numbers_too(client):
    assert predict(client, {"inputs": [[5, 3, 1, 0]]}).json() == {"predictions": ["setosa"]}


def test_malformed_json_is_a_400(client):
    response = client.post(
        "/predict", content=b'{"inputs": [[1, 2', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_a_body_that_is_not_json_by_content_type_is_a_415(client):
    response = client.post("/predict", content=b"sepal_length=5.1", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert "error" in response.json()


def test_missing_extra_and_mistyped_named_features_are_each_named(client):
    body = {"sepal_length": "5.1", "sepal_width": True, "petal_length": None, "colour": "blue"}
    response = predict(client, body)
    assert response.status_code == 422
    assert response.json()["fields"] == {
        "sepal_length": "expected a number",
        "sepal_width": "expected a number, not a boolean",
        "petal_length": "expected a number",
        "petal_width": "missing",
        "colour": "unexpected field",
    }


def test_batch_errors_name_every_offending_value_by_path(client):
    rows = [[5.1, 3.5, 1.4, 0.2], [5.1, 3.5, 1.4], [5.1, "x", 1.4, 0.2], "row", [1, 2, 3, False]]
    response = predict(client, {"inputs": rows, "extra": 1})
    assert response.status_code == 422
    assert response.json()["fields"] == {
        "extra": "unexpected field",
        "inputs/1": "expected 4 values, got 3",
        "inputs/2/1": "expected a number",
        "inputs/3": "expected a list of 4 values or an object of named features",
        "inputs/4/3": "expected a number, not a boolean",
    }


def test_named_instances_report_missing_and_unexpected_features_by_path(client):
    row = {**SETOSA, "petal_colour": 1}
    del row["sepal_width"]
    response = predict(client, {"instances": [SETOSA, row]})
    assert response.json()["fields"] == {
        "instances/1/sepal_width": "missing",
        "instances/1/petal_colour": "unexpected field",
    }


def test_nan_and_infinity_are_refused_with_their_paths(client):
    body = b'{"inputs": [[NaN, 1, 1, 1], [1, Infinity, 1, -Infinity], [1e999, 1, 1, 1]]}'
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["fields"] == {
        "inputs/0/0": "expected a finite number",
        "inputs/1/1": "expected a finite number",
        "inputs/1/3": "expected a finite number",
        "inputs/2/0": "expected a finite number",
    }


TOO_LARGE = "too large for this model: its answer is not a finite number"


@pytest.mark.parametrize("mode", ["label", "both"])
def test_values_too_large_for_the_model_are_a_422_naming_them(client, mode):
    """Finite, but the model's scores overflow: no label or probability is made up for them."""
    huge = {**SETOSA, "petal_length": 1.7e308, "petal_width": -1.7e308}
    named = predict(client, {**huge, "return": mode})
    assert named.status_code == 422
    assert named.json()["fields"] == {"petal_length": TOO_LARGE, "petal_width": TOO_LARGE}

    rows = [list(SETOSA.values()), list(huge.values()), list(VIRGINICA.values())]
    batch = predict(client, {"inputs": rows, "return": mode})
    assert batch.status_code == 422
    assert batch.json()["fields"] == {"inputs/1": f"{TOO_LARGE} (petal_length, petal_width)"}

    one = predict(client, {"instances": [huge], "return": mode})
    assert one.json()["fields"] == {"instances/0": f"{TOO_LARGE} (petal_length, petal_width)"}

    tensor = {"name": "input", "shape": [3, 4], "datatype": "FP64", "data": rows}
    infer = client.post("/v2/models/iris/infer", json={"inputs": [tensor]})
    assert infer.status_code == 422
    assert infer.json()["fields"] == {"rows/1": f"{TOO_LARGE} (petal_length, petal_width)"}
    assert predict(client, {"inputs": [rows[0], [1e300, 1e300, 1e300, 1e300]]}).status_code == 200


def test_the_batch_keys_must_hold_a_non_empty_list(client):
    assert predict(client, {"inputs": []}).json()["fields"] == {"inputs": "expected at least one row"}
    assert predict(client, {"instances": {"a": 1}}).json()["fields"] == {
        "instances": "expected a list of rows"
    }


def test_a_body_that_is_not_an_object_is_a_422(client):
    assert predict(client, [[1, 2, 3, 4]]).status_code == 422


def test_an_unknown_return_mode_is_a_422(client):
    response = predict(client, SETOSA, **{"return": "everything"})
    assert response.status_code == 422
    assert "return" in response.json()["fields"]


def test_a_body_over_the_size_limit_is_a_413(client):
    response = predict(client, {"inputs": [[1.0, 2.0, 3.0, 4.0]] * 2000})
    assert response.status_code == 413
    assert "error" in response.json()


def test_more_rows_than_allowed_is_a_413(client):
    response = predict(client, {"inputs": [[1, 2, 3, 4]] * 51})
    assert response.status_code == 413
    assert "50" in response.json()["error"]


def test_unknown_routes_and_wrong_methods_answer_in_json(client):
    assert client.get("/nowhere").json() == {"error": "Not found."}
    response = client.get("/predict")
    assert response.status_code == 405
    assert "POST" in response.json()["error"]


def test_garbage_instead_of_http_gets_a_json_400(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(b"HELLO THERE\r\n\r\n")
        reply = conn.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400")
    assert b'{"error":' in reply


def test_a_client_that_sends_headers_too_slowly_is_cut_off(server, client):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        reply = conn.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408")
        assert conn.recv(4096) == b""
    assert time.monotonic() - started < 3
    assert client.get("/healthz").status_code == 200


def test_metrics_count_requests_rows_and_batches_over_all_workers(server):
    before = httpx.get(f"{server.url}/metrics").text
    # A new connection for each request, so both workers get some.
    with httpx.Client(base_url=server.url, headers={"connection": "close"}) as fresh:
        for _ in range(20):
            fresh.post("/predict", json={"inputs": [list(SETOSA.values())] * 3})
    text = httpx.get(f"{server.url}/metrics").text
    assert 'model="iris",model_version="3"' in text

    def value(document, prefix):
        return sum(float(line.rsplit(" ", 1)[1]) for line in document.splitlines() if line.startswith(prefix))

    ok = 'serving_requests_total{model="iris",model_version="3",route="/predict",status="200"}'
    assert value(text, ok) - value(before, ok) == 20
    assert value(text, "serving_rows_predicted_total") - value(before, "serving_rows_predicted_total") == 60
    assert "serving_request_duration_seconds_bucket" in text
    assert 'serving_batch_rows_bucket{model="iris",model_version="3",le="4"}' in text


def test_the_openapi_document_names_and_types_every_feature(client):
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    named = spec["components"]["schemas"]["NamedFeatures"]
    assert named["properties"]["petal_width"] == {"type": "number"}
    assert named["required"] == list(SETOSA)
    forms = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert len(forms) == 3
    assert "securitySchemes" not in spec["components"]  # no access file here


def test_the_docs_page_is_served_by_the_container_itself(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in page.text
    assert "<script src" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere


def test_open_inference_protocol_health_and_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
    metadata = client.get("/v2/models/iris").json()
    assert metadata["name"] == "iris" and metadata["versions"] == ["3"]
    assert client.get("/v2/models/tulip").status_code == 404


def test_open_inference_protocol_infers_from_one_matrix_tensor(client):
    rows = [list(SETOSA.values()), list(VIRGINICA.values())]
    body = {"id": "r1", "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": rows}]}
    answer = client.post("/v2/models/iris/infer", json=body).json()
    assert answer["id"] == "r1" and answer["model_name"] == "iris" and answer["model_version"] == "3"
    label, probabilities = answer["outputs"]
    assert label == {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["setosa", "virginica"]}
    assert probabilities["shape"] == [2, 3] and len(probabilities["data"]) == 6


def test_open_inference_protocol_infers_from_one_tensor_per_feature(client):
    inputs = [
        {"name": name, "shape": [1], "datatype": "FP64", "data": [value]} for name, value in VIRGINICA.items()
    ]
    body = {"inputs": inputs, "outputs": [{"name": "label"}]}
    answer = client.post("/v2/models/iris/versions/3/infer", json=body).json()
    assert answer["outputs"] == [{"name": "label", "datatype": "BYTES", "shape": [1], "data": ["virginica"]}]


def test_open_inference_protocol_errors_name_the_tensor_values(client):
    body = {
        "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [1, 2, 3, "4", 5, 6, 7, True]}]
    }
    response = client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 422
    assert response.json()["fields"] == {
        "inputs/0/data/3": "expected a number",
        "inputs/0/data/7": "expected a number, not a boolean",
    }
    body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [1, 2, 3]}]}
    assert "inputs/0/data" in client.post("/v2/models/iris/infer", json=body).json()["fields"]


@pytest.mark.parametrize(
    ("tensor", "field"),
    [
        ({"name": "x", "shape": [0, 4], "datatype": "FP64", "data": []}, "inputs/0/shape"),
        ({"name": "x", "shape": [1, 4], "datatype": [], "data": [1, 2, 3, 4]}, "inputs/0/datatype"),
        ({"name": ["x"], "shape": [1, 4], "datatype": {}, "data": [1, 2, 3, 4]}, "inputs/0/datatype"),
        ({"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [[[[1, 2, 3, 4]]]] * 2}, "inputs/0/data"),
    ],
)
def test_open_inference_protocol_refuses_empty_and_odd_tensors_with_a_422(client, tensor, field):
    response = client.post("/v2/models/iris/infer", json={"inputs": [tensor]})
    assert response.status_code == 422, response.text
    assert field in response.json()["fields"]


def test_deeply_nested_tensor_data_is_flattened(client):
    data = [5.1, 3.5, 1.4, 0.2]
    for _ in range(900):
        data = [data]
    tensor = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": data}
    response = client.post("/v2/models/iris/infer", json={"inputs": [tensor]})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == ["setosa"]


def raw_exchange(server, payload: bytes, until: int = 1) -> bytes:
    """Send raw bytes; read until `until` complete responses arrived or the server closed."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(payload)
        data = b""
        while data.count(b"HTTP/1.1 ") < until or not data.endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def test_pipelined_requests_are_answered_in_order(server):
    body = b'{"inputs": [[6.7, 3.0, 5.2, 2.3]]}'
    post = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    )
    reply = raw_exchange(
        server, post % (len(body), body) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", until=2
    )
    first, second = reply.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200") and b'"virginica"' in first
    assert second.startswith(b"200") and b'"alive"' in second


def test_http_1_0_head_and_expect_continue_are_honoured(server):
    reply = raw_exchange(server, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200") and b"connection: close" in reply.lower()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(b"HEAD /v1/model HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = conn.recv(65536)
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
    body = b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert conn.recv(65536).startswith(b"HTTP/1.1 100 Continue")
        conn.sendall(body)
        assert b'"target":"setosa"' in conn.recv(65536)


# The batch shortcut, in-process: it gives exactly what the detailed path gives, or steps aside.

NAMES = ["a", "b", "c", "d"]
NUMBERS = ("number",) * 4
MIXED = ("number", "integer", "boolean", "number")

SPELLINGS = """
0 -0 0.0 -0.0 1 -1 5.1
3.5e0 1E2 1e-2 -2.5E+3 0.1e1 7.00 123456789012345678
9007199254740993 9223372036854775807 -9223372036854775808 18446744073709551615
4.9e-324 2.2250738585072011e-308 1.7976931348623157e308
9223372036854775809 12345678901234567891 1e-400 -1e-400 0.30000000000000004
3.141592653589793238462643383279 100000000000000000000.5 2.5e-5 -123.456e-7
""".split()


def features(kinds) -> list[Feature]:
    return [Feature(name, kind) for name, kind in zip(NAMES, kinds, strict=True)]


class Parses:
    """parse() on a shortcut validator and on a detailed one, counting how often orjson was needed."""

    def __init__(self, monkeypatch, kinds=NUMBERS, max_rows=50):
        self.shortcut = Validator(features(kinds), max_rows)
        self.detailed = Validator(features(kinds), max_rows, shortcut=False)
        self.loads = 0
        original = validation.load_json

        def counting(body):
            self.loads += 1
            return original(body)

        monkeypatch.setattr(validation, "load_json", counting)

    def both(self, body: bytes, query_mode=None) -> tuple:
        """(shortcut's outcome, detailed outcome, whether the shortcut answered on its own)."""
        before = self.loads
        fast = outcome(self.shortcut, body, query_mode)
        alone = self.loads == before
        return fast, outcome(self.detailed, body, query_mode), alone


def outcome(validator: Validator, body: bytes, query_mode=None) -> tuple:
    """("ok", form, mode, dtype, shape, exact bytes, writable) or ("error", status, message, fields)."""
    try:
        parsed = validator.parse(body, query_mode)
    except RequestError as exc:
        return ("error", exc.status, exc.message, exc.fields)
    rows = parsed.rows
    if isinstance(rows, list):
        return ("ok", parsed.form, parsed.mode, "list", len(rows), repr(rows), True)
    return ("ok", parsed.form, parsed.mode, rows.dtype.str, rows.shape, rows.tobytes(), rows.flags.writeable)


def value_by_value(body: bytes, key: str = "inputs", kinds=NUMBERS) -> bytes:
    """The rows as the field-by-field check (to_number on each value) reads them."""
    fields: dict = {}
    rows = Validator(features(kinds), 50)._checked_rows(orjson.loads(body)[key], key, fields)
    assert fields == {}
    return rows.tobytes()


def batch(rows: list[list[str]], spaces: bool = False, extra: str = "", key: str = "inputs") -> bytes:
    comma = ", " if spaces else ","
    inner = comma.join(f"[{comma.join(row)}]" for row in rows)
    return f'{{"{key}":{" " if spaces else ""}[{inner}]{extra}}}'.encode()


def test_the_shortcut_reads_every_number_spelling_exactly_as_the_detailed_path(monkeypatch):
    parses = Parses(monkeypatch)
    rng = random.Random(7)
    bodies = [batch([SPELLINGS[i : i + 4] for i in range(0, 24, 4)])]
    for _ in range(300):
        rows = [[rng.choice(SPELLINGS) for _ in range(4)] for _ in range(rng.randint(1, 50))]
        bodies.append(batch(rows, spaces=rng.random() < 0.5))
    for body in bodies:
        fast, detailed, alone = parses.both(body)
        assert alone, body
        assert fast == detailed, body
        assert fast[5] == value_by_value(body), body


def test_the_shortcut_reads_random_floats_exactly_as_the_detailed_path(monkeypatch):
    parses = Parses(monkeypatch)
    rng = np.random.default_rng(3)
    for scale in (1e-300, 1e-5, 1.0, 1e5, 1e300):
        drawn = rng.normal(0.0, scale, (40, 4))
        for values in (drawn, drawn.round(4)):
            body = orjson.dumps({"inputs": values.tolist()})
            fast, detailed, alone = parses.both(body)
            assert alone and fast == detailed
            assert fast[5] == values.tobytes()


@pytest.mark.parametrize(
    ("extra", "query_mode", "mode"),
    [
        (',"return":"label"', None, "label"),
        (',"return":"probabilities"', "label", "probabilities"),
        (', "return" : "both"', None, "both"),
        (',"return":null', "both", None),
        ("", "probabilities", "probabilities"),
        ("", None, None),
    ],
)
def test_the_shortcut_takes_the_return_mode_from_the_body_or_the_query(monkeypatch, extra, query_mode, mode):
    parses = Parses(monkeypatch)
    body = batch([["1", "2", "3", "4"], ["5", "6", "7", "8"]], extra=extra)
    fast, detailed, alone = parses.both(body, query_mode)
    assert alone and fast == detailed
    assert fast[:3] == ("ok", "inputs", mode)
    body = b'{"return":"label","instances":[[1,2,3,4]]}'
    fast, detailed, alone = parses.both(body, query_mode)
    assert alone and fast == detailed and fast[:3] == ("ok", "instances", "label")


def test_the_shortcut_applies_integer_and_boolean_columns_exactly(monkeypatch):
    parses = Parses(monkeypatch, MIXED)
    accepted = [batch([["1.5", "3", "1", "2"], ["-7.25", "4.0", "0", "1e3"], ["0", "-0", "0.0", "1"]])]
    for body in accepted:
        fast, detailed, alone = parses.both(body)
        assert alone and fast == detailed and fast[0] == "ok"
        assert fast[5] == value_by_value(body, kinds=MIXED)
    refused = {
        batch([["1", "3.5", "1", "2"]]): {"inputs/0/1": "expected an integer"},
        batch([["1", "3", "2", "2"]]): {"inputs/0/2": "expected a boolean (true or false)"},
        batch([["1", "3", "0.5", "2"], ["1", "1e-7", "1", "2"]]): {
            "inputs/0/2": "expected a boolean (true or false)",
            "inputs/1/1": "expected an integer",
        },
        batch([["1", "3", "true", "2"], ["1", "false", "1", "2"]]): {
            "inputs/1/1": "expected an integer, not a boolean"
        },
    }
    for body, fields in refused.items():
        fast, detailed, _ = parses.both(body)
        assert fast == detailed
        assert fast[0] == "error" and fast[3] == fields, body
    fast, detailed, _ = parses.both(batch([["1", "3", "true", "2"], ["1", "2", "false", "2"]]))
    assert fast == detailed and fast[0] == "ok"


# Each body is something the shortcut must not answer by itself: the detailed path's answer stands,
# with its status and every field path.
UNUSUAL = {
    "nested list": (b'{"inputs":[[1,2,3,4],[1,[2],3,4]]}', 422, {"inputs/1/1": "expected a number"}),
    "nested, right total and lengths": (
        b'{"inputs":[[1,[2,3],4],[5,6,7,8],[9,[],10,11]]}',
        422,
        {"inputs/0": "expected 4 values, got 3", "inputs/2/1": "expected a number"},
    ),
    "nested, lengths right": (
        b'{"inputs":[[[1],2,3,4],[[],2,3,4],[[1,2],3,4,5]]}',
        422,
        {
            "inputs/0/0": "expected a number",
            "inputs/1/0": "expected a number",
            "inputs/2/0": "expected a number",
        },
    ),
    "ragged rows, right total": (
        b'{"inputs":[[1,2,3,4,5],[1,2,3]]}',
        422,
        {"inputs/0": "expected 4 values, got 5", "inputs/1": "expected 4 values, got 3"},
    ),
    "a number for a row, a nested row": (
        b'{"inputs":[[1,2,3,[4,5]],6,[7,8,9,10]]}',
        422,
        {
            "inputs/0/3": "expected a number",
            "inputs/1": "expected a list of 4 values or an object of named features",
        },
    ),
    "an empty row and a long one": (
        b'{"inputs":[[],[1,2,3,4,5,6,7,8]]}',
        422,
        {"inputs/0": "expected 4 values, got 0", "inputs/1": "expected 4 values, got 8"},
    ),
    "boolean": (
        b'{"inputs":[[1,2,3,4],[1,true,3,4]]}',
        422,
        {"inputs/1/1": "expected a number, not a boolean"},
    ),
    "string": (b'{"inputs":[[1,"2",3,4]]}', 422, {"inputs/0/1": "expected a number"}),
    "string with brackets": (b'{"inputs":[[1,"[2]",3,4]]}', 422, {"inputs/0/1": "expected a number"}),
    "null": (b'{"inputs":[[1,2,null,4]]}', 422, {"inputs/0/2": "expected a number"}),
    "object in a row": (b'{"inputs":[[1,2,{},4]]}', 422, {"inputs/0/2": "expected a number"}),
    "NaN": (b'{"inputs":[[NaN,2,3,4]]}', 422, {"inputs/0/0": "expected a finite number"}),
    "Infinity": (b'{"inputs":[[1,-Infinity,3,4]]}', 422, {"inputs/0/1": "expected a finite number"}),
    "1e400": (b'{"inputs":[[1,2,3,1e400]]}', 422, {"inputs/0/3": "expected a finite number"}),
    "-1e400": (b'{"inputs":[[1,2,3,4],[1,2,-1e400,4]]}', 422, {"inputs/1/2": "expected a finite number"}),
    "400-digit integer": (
        b'{"inputs":[[1,2,3,1' + b"0" * 400 + b"]]}",
        422,
        {"inputs/0/3": "expected a finite number"},
    ),
    "extra key": (b'{"inputs":[[1,2,3,4]],"extra":1}', 422, {"extra": "unexpected field"}),
    "both batch keys": (
        b'{"inputs":[[1,2,3,4]],"instances":[[1,2,3,4]]}',
        422,
        {"instances": "unexpected field"},
    ),
    "unknown return mode": (
        b'{"inputs":[[1,2,3,4]],"return":"everything"}',
        422,
        {"return": "expected one of label, probabilities, both"},
    ),
    "return as a list": (
        b'{"inputs":[[1,2,3,4]],"return":["label"]}',
        422,
        {"return": "expected one of label, probabilities, both"},
    ),
    "return and an extra key": (
        b'{"inputs":[[1,2,3,4]],"return":"label","x":[1]}',
        422,
        {"x": "unexpected field"},
    ),
    "named-object rows, one bad": (
        b'{"inputs":[{"a":1,"b":2,"c":3,"d":4},{"a":1,"b":2,"c":3}]}',
        422,
        {"inputs/1/d": "missing"},
    ),
    "empty list of rows": (b'{"inputs":[]}', 422, {"inputs": "expected at least one row"}),
    "rows not a list": (b'{"inputs":{"a":1}}', 422, {"inputs": "expected a list of rows"}),
    "rows null": (b'{"inputs":null}', 422, {"inputs": "expected a list of rows"}),
    "too many rows": (batch([["1", "2", "3", "4"]] * 51), 413, None),
    "trailing garbage": (b'{"inputs":[[1,2,3,4]]} x', 400, None),
    "not an object": (b'[{"inputs":[[1,2,3,4]]}]', 422, {}),
    "invalid UTF-8": (b'{"inputs":[[1,2,3,4]],"\xff":1}', 400, None),
}


@pytest.mark.parametrize("case", list(UNUSUAL))
def test_unusual_batches_get_the_detailed_answer(monkeypatch, case):
    body, status, fields = UNUSUAL[case]
    parses = Parses(monkeypatch)
    fast, detailed, _ = parses.both(body)
    assert fast == detailed
    assert fast[:2] == ("error", status)
    if fields is not None:
        assert fast[3] == fields


# Unusual, yet well-formed: the shortcut steps aside and the detailed path accepts them, as before.
ACCEPTED_ELSEWHERE = {
    "duplicate batch key": b'{"inputs":[[1,2]],"inputs":[[1,2,3,4]]}',
    "integer beyond 64 bits": b'{"inputs":[[1,2,3,100000000000000000000000000000]]}',
    "integer below -2**63": b'{"inputs":[[1,2,3,-9223372036854775809]]}',
    "leading whitespace": b' {"inputs":[[1,2,3,4]]}',
    "named-object rows": b'{"inputs":[{"a":1,"b":2,"c":3,"d":4},{"d":4,"c":3,"b":2,"a":1}]}',
    "byte order mark": b'\xef\xbb\xbf{"inputs":[[1,2,3,4]]}',
    "batch key far into the body": b'{"return":' + b" " * 60 + b'"label", "inputs":[[1,2,3,4]]}',
}


@pytest.mark.parametrize("case", list(ACCEPTED_ELSEWHERE))
def test_unusual_but_valid_batches_are_still_accepted(monkeypatch, case):
    parses = Parses(monkeypatch)
    fast, detailed, alone = parses.both(ACCEPTED_ELSEWHERE[case])
    assert fast == detailed and fast[0] == "ok"
    assert not alone


def test_number_syntax_is_judged_as_the_detailed_path_judges_it(monkeypatch):
    parses = Parses(monkeypatch)
    spellings = "01 1. .5 +1 - 1e 1e+ 0x10 --1 1.e5 -.5 00 -01 Infinity NaN nan inf 0.0.0 1ee5 1/ tru nul"
    for spelling in [*spellings.split(), "\t1", "1\t", "\n-1\r\n", "\x0c1", " 2 "]:
        body = batch([["1", "2", "3", "4"], [spelling, "2", "3", "4"]])
        fast, detailed, _ = parses.both(body)
        assert fast == detailed, spelling


def test_random_damage_to_a_batch_gets_the_same_answer_either_way(monkeypatch):
    """Seeded mutations of well-formed batches: the shortcut never answers differently."""
    parses = Parses(monkeypatch, MIXED, max_rows=20)
    rng = random.Random(11)
    pieces = [
        b"[",
        b"]",
        b",",
        b"[]",
        b"1",
        b"-",
        b"true",
        b"null",
        b'"x"',
        b"1e400",
        b"{}",
        b" ",
        b"0.5",
        b"2",
    ]
    answered = 0
    for _ in range(1500):
        columns = (["0.5", "-4", "1e2"], ["0", "3.0", "-7"], ["0", "1", "1.0"], ["2", "-0.25", "1e-3"])
        rows = [[rng.choice(column) for column in columns] for _ in range(rng.randint(1, 25))]
        body = bytearray(batch(rows, extra=rng.choice(["", ',"return":"both"'])))
        for _ in range(rng.randint(0, 3)):
            at = rng.randrange(1, len(body))
            if rng.random() < 0.5:
                body[at:at] = rng.choice(pieces)
            else:
                del body[at : at + rng.randint(1, 3)]
        fast, detailed, alone = parses.both(bytes(body))
        assert fast == detailed, bytes(body)
        answered += alone
    assert answered > 100  # the shortcut did answer many of them


def test_the_shortcut_keeps_working_after_refusing_bodies(monkeypatch):
    parses = Parses(monkeypatch)
    good = batch([["1", "2", "3", "4"]] * 3)
    for body, *_ in UNUSUAL.values():
        parses.both(body)
        fast, detailed, alone = parses.both(good)
        assert alone and fast == detailed and fast[0] == "ok"


def test_a_large_batch_through_the_server_matches_row_by_row_answers(client):
    rng = np.random.default_rng(5)
    rows = rng.normal([5.8, 3.0, 3.8, 1.2], [0.8, 0.4, 1.8, 0.8], (50, 4)).round(3).tolist()
    together = predict(client, {"inputs": rows, "return": "both"}).json()
    one_by_one = [predict(client, {"inputs": [row], "return": "both"}).json() for row in rows]
    assert together["predictions"] == [answer["predictions"][0] for answer in one_by_one]
    for joint, single in zip(together["probabilities"], one_by_one, strict=True):
        # One row goes through the linear kernel, a batch through ONNX: both agree with
        # scikit-learn to 1e-9 (backends.py), so with each other to twice that.
        assert joint == pytest.approx(single["probabilities"][0], abs=2e-9)
