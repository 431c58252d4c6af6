"""The binary infer shortcut (one float tensor, read in one go) answers exactly what the full
parse answers, and leaves everything else to it."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving.config import Feature
from serving.open_inference import InferenceRequest
from serving.validation import RequestError, Validator

NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
WIDTH = len(NAMES)
MAX_ROWS = 20


def parsers(kinds=("number",) * WIDTH) -> tuple[InferenceRequest, InferenceRequest]:
    validator = Validator([Feature(name, kind) for name, kind in zip(NAMES, kinds, strict=True)], MAX_ROWS)
    return InferenceRequest(validator), InferenceRequest(validator, shortcut=False)


def outcome(parser: InferenceRequest, body: bytes, header_length: int) -> tuple:
    try:
        found = parser.parse(body, header_length)
    except RequestError as exc:
        return ("error", exc.status, exc.message, exc.fields)
    return (
        "ok",
        found.rows.dtype.str,
        found.rows.shape,
        found.rows.tobytes(),
        found.request_id,
        found.outputs,
        found.binary_output,
    )


values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 3e38]),
)


@st.composite
def requests(draw) -> tuple[bytes, int]:
    rows = draw(st.integers(0, MAX_ROWS + 1))
    width = draw(st.sampled_from([WIDTH, WIDTH, WIDTH, 3]))
    datatype = draw(st.sampled_from(["FP64", "FP32", "FP64", "INT64", "FP16"]))
    dtype = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8", "FP16": "<f2"}[datatype]
    data = np.array(draw(st.lists(values, min_size=rows * width, max_size=rows * width)), dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        raw = (
            np.nan_to_num(data, nan=0, posinf=0, neginf=0).astype(dtype).tobytes()
            if datatype in ("INT64",)
            else data.astype(dtype).tobytes()
        )
    size = len(raw) + draw(st.sampled_from([0, 0, 0, 8, -8]))
    tensor = {
        "name": "input-0",
        "shape": [rows, width],
        "datatype": datatype,
        "parameters": {"binary_data_size": size},
    }
    document: dict = {"inputs": [tensor]}
    if draw(st.booleans()):
        document["parameters"] = draw(
            st.sampled_from(
                [
                    {"binary_data_output": True},
                    {"binary_data_output": False},
                    {"binary_data_output": 1},
                    {},
                    [],
                ]
            )
        )
    if draw(st.booleans()):
        document["id"] = draw(st.sampled_from(["req-1", 7, None]))
    if draw(st.integers(0, 5)) == 0:
        document["outputs"] = [{"name": "label"}]
    header = orjson.dumps(document)
    return header + raw, len(header)


@given(requests())
def test_the_shortcut_answers_what_the_full_parse_answers(request):
    body, header_length = request
    shortcut, full = parsers()
    with np.errstate(
        over="ignore", invalid="ignore"
    ):  # a sum past float64 (or inf - inf): checked one by one
        assert outcome(shortcut, body, header_length) == outcome(full, body, header_length)


KEEPING, _ = parsers()  # one shortcut for every example: their JSON parts repeat, read once


@given(requests())
def test_a_json_part_read_before_answers_what_the_full_parse_answers(request):
    body, header_length = request
    _, full = parsers()
    with np.errstate(over="ignore", invalid="ignore"):
        expected = outcome(full, body, header_length)
        assert outcome(KEEPING, body, header_length) == expected
        assert outcome(KEEPING, body, header_length) == expected


def test_a_known_json_part_still_has_its_values_and_length_checked():
    shortcut, full = parsers()
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2, WIDTH], "datatype": "FP64", "parameters": {"binary_data_size": 64}}
            ]
        }
    )
    rows = np.arange(8, dtype="<f8").reshape(2, WIDTH)
    assert np.array_equal(shortcut.parse(header + rows.tobytes(), len(header)).rows, rows)
    assert header in shortcut.known_headers
    rows[1, 2] = math.nan
    for body in (header + rows.tobytes(), header + rows.tobytes()[:-8]):
        assert outcome(shortcut, body, len(header)) == outcome(full, body, len(header))
        assert outcome(shortcut, body, len(header))[0] == "error"


def test_the_json_parts_kept_are_bounded():
    from serving.open_inference import KNOWN_HEADERS

    shortcut, _ = parsers()
    data = np.zeros((1, WIDTH), dtype="<f8").tobytes()
    for index in range(KNOWN_HEADERS * 3):
        header = orjson.dumps(
            {
                "id": f"request-{index}",
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, WIDTH],
                        "datatype": "FP64",
                        "parameters": {"binary_data_size": 32},
                    }
                ],
            }
        )
        assert shortcut.parse(header + data, len(header)).request_id == f"request-{index}"
        assert len(shortcut.known_headers) <= KNOWN_HEADERS
    long_id = orjson.dumps(
        {
            "id": "x" * 2000,
            "inputs": [
                {"name": "x", "shape": [1, WIDTH], "datatype": "FP64", "parameters": {"binary_data_size": 32}}
            ],
        }
    )
    assert shortcut.parse(long_id + data, len(long_id)).request_id == "x" * 2000
    assert long_id not in shortcut.known_headers


def test_the_shortcut_reads_tritonclients_default_request_alone(monkeypatch):
    from serving import binary_tensors

    rows = np.arange(12, dtype="<f8").reshape(3, WIDTH) / 7
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [3, WIDTH], "datatype": "FP64", "parameters": {"binary_data_size": 96}}
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    monkeypatch.setattr(binary_tensors, "read_inputs", lambda *args: (_ for _ in ()).throw(AssertionError))
    shortcut, _ = parsers()

    found = shortcut.parse(header + rows.tobytes(), len(header))

    assert np.array_equal(found.rows, rows) and found.rows.flags.writeable and found.binary_output


def test_features_that_are_not_all_numbers_always_take_the_full_parse():
    shortcut, _ = parsers(("number", "integer", "number", "number"))
    assert not shortcut.shortcut


def fitted(kind: str):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.svm import LinearSVC

    data, target = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])
    return {
        "text labels": lambda: LogisticRegression(max_iter=1000).fit(data, names[target]),
        "number labels": lambda: LogisticRegression(max_iter=1000).fit(data, target),
        "no probabilities": lambda: LinearSVC().fit(data, target),
        "regressor": lambda: LinearRegression().fit(data, target),
    }[kind]()


@pytest.mark.parametrize("kind", ["text labels", "number labels", "no probabilities", "regressor"])
@pytest.mark.parametrize("rows", [1, 3, 64])
def test_an_all_binary_answer_is_the_one_the_general_answer_builds(kind, rows):
    from serving.config import ModelMeta
    from serving.model import Model
    from serving.open_inference import Inference, InferenceAnswers

    estimator = fitted(kind)
    classes = tuple(value.item() for value in getattr(estimator, "classes_", []))
    meta = ModelMeta("iris-%1", 3, "0" * 64, "skops", tuple(Feature(name) for name in NAMES), classes=classes)
    model = Model.from_estimator(estimator, meta)
    model.start()
    answers = InferenceAnswers(model)
    matrix = np.random.default_rng(rows).uniform(0, 7, (rows, WIDTH))
    every = [(name, None) for name in answers.available]

    template = answers.response(Inference(matrix, None, None, True))
    general = answers.response(Inference(matrix, None, every, True))

    assert template == general


@pytest.mark.parametrize(
    "target, label_map",
    [
        ([0, 1, 2], {"0": "setosa", "1": "versicolor", "2": "virginica"}),  # looked up in a table
        ([2, 5, 9], {"2": "setosa", "9": "virginica"}),  # a table too, with gaps
        (["setosa", "versicolor", "virginica"], {}),  # text classes: looked up one by one
        ([-1, 0, 1], {"-1": "negative", "0": "zero", "1": "positive"}),
    ],
)
def test_binary_labels_are_each_rows_label_as_bytes_elements(target, label_map):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from serving import binary_tensors
    from serving.config import ModelMeta
    from serving.model import Model
    from serving.open_inference import InferenceAnswers

    data, classes = load_iris(return_X_y=True)
    estimator = LogisticRegression(max_iter=1000).fit(data, np.array(target)[classes])
    meta = ModelMeta(
        "iris",
        1,
        "0" * 64,
        "skops",
        tuple(Feature(name) for name in NAMES),
        classes=tuple(value.item() for value in estimator.classes_),
        label_map=label_map,
    )
    model = Model.from_estimator(estimator, meta)
    model.start()
    answers = InferenceAnswers(model)
    raw = model.answers(data[::7], False)[0]

    expected = binary_tensors.encode_bytes([str(model.label_of[value]) for value in raw.tolist()])
    assert answers._label_tensor(raw) == expected
    assert (answers.label_table is not None) == (type(target[0]) is int and min(target) >= 0)
