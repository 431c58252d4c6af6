"""Generated requests against a real server: whatever a client sends, the answer is never a 5xx.

Bodies are drawn near the valid forms (the right keys with wrong values, rows of the wrong
length, stray keys, NaN and huge numbers, nested lists) and far from them (any JSON, broken
JSON, any bytes), with any `return` query and content type, on /predict and the v2 infer route.
Every answer must be a 2xx or one of the documented client errors, with a JSON body that says
what went wrong, and the server must keep answering. The examples are derived from the test
itself (derandomized, the root conftest's profile), so a run in CI sees the same ones as here.
"""

from __future__ import annotations

import json
import math

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from serving.tests.support import Server, stop_all, write_model

FEATURES = ["length", "count", "flag", "ratio"]
TYPES = ["number", "integer", "boolean", "number"]
CLIENT_ERRORS = {400, 413, 415, 422}
MAX_ROWS = 20
MAX_BODY = 4096
EXAMPLES = settings(max_examples=250)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A typed four-feature, three-class classifier, with a low row cap and body limit (413s)."""
    directory = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    data = np.column_stack(
        [rng.normal(size=200), rng.integers(0, 9, 200), rng.integers(0, 2, 200), rng.random(200)]
    )
    target = (data[:, 0] > 0).astype(int) + (data[:, 2] > 0.5)  # three classes: scores can overflow
    estimator = LogisticRegression().fit(data, target)
    schema = [{"name": name, "type": kind} for name, kind in zip(FEATURES, TYPES, strict=True)]
    labels = {"0": "low", "1": "mid", "2": "high"}
    env = write_model(directory, "typed", estimator, FEATURES, labels, schema=schema)
    env.update(SERVING_MAX_ROWS=str(MAX_ROWS), SERVING_MAX_BODY_BYTES=str(MAX_BODY), SERVING_WORKERS="1")
    started = Server(env, directory / "server.log").wait_ready()
    with httpx.Client(base_url=started.url, timeout=10) as client:
        yield client
    stop_all([started])


# JSON values of every kind; numbers include the extremes validation must refuse or take.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, 1, -1, 0.5, 1e308, -1e308, 5e-324, 2**63, -(2**63) - 1])
    | st.text(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
modes = st.sampled_from(["label", "probabilities", "both"]) | values
feature_value = st.sampled_from([0, 1, 2.5, -3, True, False]) | scalars
named_row = st.fixed_dictionaries(
    {},
    optional={
        **{name: feature_value for name in FEATURES},
        "return": modes,
        "extra": values,
    },
)
list_row = st.lists(feature_value, min_size=0, max_size=6)
batch = st.lists(list_row | named_row | values, min_size=0, max_size=MAX_ROWS + 3)
documents = (
    named_row
    | st.builds(
        lambda rows, mode: {"inputs": rows, **mode},
        batch,
        st.just({}) | st.builds(lambda m: {"return": m}, modes),
    )
    | st.builds(lambda rows: {"instances": rows}, batch)
    | st.builds(lambda a, b: {"inputs": a, "instances": b}, batch, batch)
    | values
)


def _json(document) -> bytes:
    """JSON text as a client may write it: any integer, and lone surrogates escaped."""
    return json.dumps(document).encode()


def _with_non_finite(body: bytes, token: str) -> bytes:
    """Put a NaN or Infinity token where the first number stands (orjson cannot write them)."""
    for index, byte in enumerate(body):
        if chr(byte) in "-0123456789":
            end = index + 1
            while end < len(body) and chr(body[end]) in "0123456789.eE+-":
                end += 1
            return body[:index] + token.encode() + body[end:]
    return body


# Requests the model must answer: each feature's value of its own type, anywhere in its range.
typed_value = {
    "number": st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**53), 2**53)
    | st.sampled_from([1e300, -1.7e308, 1.7e308]),  # valid, and enough to overflow a model's scores
    "integer": st.integers(-(2**53), 2**53) | st.floats(-1e15, 1e15).map(float.__floor__).map(float),
    "boolean": st.sampled_from([0, 1, True, False, 0.0, 1.0]),
}
valid_named = st.fixed_dictionaries(
    {name: typed_value[kind] for name, kind in zip(FEATURES, TYPES, strict=True)}
)
valid_list = st.tuples(*(typed_value[kind] for kind in TYPES)).map(list)
valid_documents = (
    valid_named
    | st.builds(lambda rows: {"inputs": rows}, st.lists(valid_list, min_size=1, max_size=MAX_ROWS))
    | st.builds(lambda rows: {"instances": rows}, st.lists(valid_named | valid_list, min_size=1, max_size=5))
)
bodies = (
    valid_documents.map(_json)
    | documents.map(_json)
    | st.builds(
        _with_non_finite, documents.map(_json), st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999"])
    )
    | st.builds(lambda body, cut: body[:cut], documents.map(_json), st.integers(0, 200))
    | st.binary(max_size=300)
    | st.builds(lambda rows: _json({"inputs": [[1.5, 2, 1, 0.5]] * rows}), st.integers(0, 400))
)
content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "text/plain", "", None]
)
queries = st.none() | st.sampled_from(["label", "both", "probabilities"]) | st.text(max_size=6)


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.status_code in CLIENT_ERRORS, response.status_code
        document = response.json()
        assert document["error"] and "Traceback" not in response.text
    else:
        assert response.status_code == 200
        for value in _leaves(response.json()):
            assert value is not None and (not isinstance(value, float) or math.isfinite(value)), response.text


def _leaves(document):
    if isinstance(document, dict):
        for value in document.values():
            yield from _leaves(value)
    elif isinstance(document, list):
        for value in document:
            yield from _leaves(value)
    else:
        yield document


def _post(client: httpx.Client, path: str, body: bytes, content_type, query) -> httpx.Response:
    headers = {} if content_type is None else {"content-type": content_type}
    params = None if query is None else {"return": query}
    return client.post(path, content=body, headers=headers, params=params)


@EXAMPLES
@given(body=bodies, content_type=content_types, query=queries)
def test_predict_answers_any_request_without_a_server_error(server, body, content_type, query):
    _check(_post(server, "/predict", body, content_type, query))


@EXAMPLES
@given(document=valid_documents, query=st.none() | st.sampled_from(["label", "both", "probabilities"]))
def test_well_formed_rows_get_finite_answers_or_a_422_naming_the_values_too_large(server, document, query):
    response = _post(server, "/predict", _json(document), "application/json", query)
    _check(response)
    if response.status_code != 200:
        assert response.status_code == 422, response.text
        reasons = response.json()["fields"].values()
        assert all(reason.startswith("too large for this model") for reason in reasons), response.text


tensor = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["input", *FEATURES]) | st.text(max_size=6),
        "shape": st.lists(st.integers(-1, 30), max_size=3) | values,
        "datatype": st.sampled_from(["FP64", "FP32", "INT64", "BOOL", "BYTES"]) | values,
        "data": st.lists(feature_value, max_size=30) | st.lists(list_row, max_size=5) | values,
    },
)
infer_documents = st.fixed_dictionaries(
    {},
    optional={
        "inputs": st.lists(tensor, max_size=5) | values,
        "outputs": st.lists(
            st.fixed_dictionaries({"name": st.sampled_from(["label", "probabilities"]) | values})
        )
        | values,
        "id": values,
        "parameters": values,
    },
)


@EXAMPLES
@given(body=infer_documents.map(_json) | bodies, content_type=content_types)
def test_v2_infer_answers_any_request_without_a_server_error(server, body, content_type):
    _check(_post(server, "/v2/models/typed/infer", body, content_type, None))


def test_the_generated_requests_reach_the_model_and_every_client_error(server):
    """The strategies are not all refused at the door: valid bodies among them get predictions."""
    seen: set[int] = set()

    @settings(EXAMPLES, max_examples=300)
    @given(body=bodies, content_type=content_types, query=queries)
    def probe(body, content_type, query):
        seen.add(_post(server, "/predict", body, content_type, query).status_code)

    probe()
    assert {200, 400, 413, 415, 422} <= seen, seen
