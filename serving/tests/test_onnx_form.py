"""The ONNX form the portal stores: served without scikit-learn, with the same answers."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import httpx
import numpy as np
import orjson
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from serving import onnx_graph
from serving.backends import LinearBatchBackend, LinearRowKernel, verification_rows
from serving.config import Feature, ModelMeta
from serving.model import Model
from serving.tests.support import IRIS_FEATURES, IRIS_LABELS, REPO, SETOSA, VIRGINICA, write_model

X, Y = load_iris(return_X_y=True)


def meta_for(estimator, fmt="skops", **extra) -> ModelMeta:
    classes = tuple(value.item() for value in getattr(estimator, "classes_", []))
    features = tuple(Feature(name) for name in IRIS_FEATURES)
    return ModelMeta(
        name="iris", version=1, sha256="0" * 64, format=fmt, schema=features, classes=classes, **extra
    )


def onnx_form(estimator) -> bytes:
    plan = Model.from_estimator(estimator, meta_for(estimator)).verified_onnx()
    assert plan is not None and plan.dtype is np.float64
    return plan.onnx_bytes


LINEAR_MODELS = {
    "multinomial": lambda: LogisticRegression(max_iter=1000).fit(X, Y),
    "scaled": lambda: make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y),
    "binary": lambda: LogisticRegression(max_iter=1000).fit(X, Y == 0),
    "regressor": lambda: make_pipeline(StandardScaler(), Ridge()).fit(X, X[:, 3]),
}


@pytest.mark.parametrize("kind", sorted(LINEAR_MODELS))
def test_a_linear_onnx_form_answers_one_row_with_the_kernel_and_scikit_learns_numbers(kind):
    estimator = LINEAR_MODELS[kind]()
    model = Model.from_onnx(onnx_form(estimator), meta_for(estimator, "onnx"))
    model.start()
    assert model.estimator is None and model.row_kernel is not None, model.backend_name
    rows = np.random.default_rng(1).normal(3.0, 2.0, (50, 4))
    for row in rows:
        value, proba = model.row(row.tolist(), True)
        expected = estimator.predict(row.reshape(1, -1))[0]
        if kind == "regressor":
            assert value == pytest.approx(expected, abs=1e-9)
        else:
            assert value == expected
            np.testing.assert_allclose(
                proba, estimator.predict_proba(row.reshape(1, -1))[0], rtol=0, atol=1e-9
            )
    assert model.labels_for(rows) == pytest.approx(estimator.predict(rows).tolist(), abs=1e-9)


@pytest.mark.parametrize("kind", sorted(LINEAR_MODELS))
@pytest.mark.parametrize("count", [1, 64, LinearBatchBackend.MAX_ROWS, LinearBatchBackend.MAX_ROWS + 1, 3000])
def test_linear_batches_in_numpy_or_onnx_runtime_give_scikit_learns_numbers(kind, count):
    estimator = LINEAR_MODELS[kind]()
    model = Model.from_estimator(estimator, meta_for(estimator))
    model.start()
    if not isinstance(model.backend, LinearBatchBackend):
        declined_only_for_ties(model, estimator)
    rows = np.random.default_rng(count).normal(3.0, 2.0, (count, 4))
    raw, proba = model.answers(rows, model.has_proba)
    if kind == "regressor":
        np.testing.assert_allclose(raw, estimator.predict(rows), rtol=0, atol=1e-9)
    else:
        assert raw.tolist() == estimator.predict(rows).tolist()
        np.testing.assert_allclose(proba, estimator.predict_proba(rows), rtol=0, atol=1e-9)


def declined_only_for_ties(model: Model, estimator) -> None:
    """NumPy batches were declined: only because a sample row lies on a tie between two classes
    that the folded weights round the other way on this machine's floating point (the sample puts
    rows on the boundaries on purpose)."""
    sample, (labels, proba) = model._reference()
    batches = LinearBatchBackend(LinearRowKernel.from_estimator(estimator), model.classes, model.backend)
    size = batches.MAX_ROWS
    ours = np.concatenate([batches.predict(sample[at : at + size]) for at in range(0, len(sample), size)])
    differ = [index for index, label in enumerate(labels) if ours[index] != label]
    assert differ, model.backend_name
    for index in differ:
        top = np.sort(np.asarray(proba[index]))[-2:]
        assert top[1] - top[0] < 1e-9, (index, proba[index])


def test_linear_batches_are_checked_not_trusted(monkeypatch):
    """Weights that give other answers leave batches to ONNX Runtime (the row kernel too)."""
    estimator = LINEAR_MODELS["multinomial"]()
    made = LinearRowKernel.from_estimator

    def skewed(fitted):
        kernel = made(fitted)
        kernel.intercepts[0] += 0.5
        return kernel

    monkeypatch.setattr(LinearRowKernel, "from_estimator", skewed)
    model = Model.from_estimator(estimator, meta_for(estimator))
    model.start()
    assert model.row_kernel is None and model.backend_name == "onnxruntime (float64)"


def test_trees_are_converted_in_float32_only_and_linear_models_in_both():
    forest = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3, random_state=0)).fit(X, Y)
    linear = LINEAR_MODELS["scaled"]()
    kinds = [
        [(plan.input_dtype, plan.dtype) for plan in Model.from_estimator(model, meta_for(model)).plans]
        for model in (forest, linear)
    ]
    assert kinds == [
        [(np.float64, np.float32), (np.float32, np.float32)],  # the scaler in float64 first
        [(np.float64, np.float64), (np.float32, np.float32)],
    ]


def test_the_check_sample_aims_at_splits_behind_a_scaler():
    data, target = load_breast_cancer(return_X_y=True)
    pipeline = make_pipeline(StandardScaler(), RandomForestClassifier(20, random_state=0)).fit(data, target)
    scaled = pipeline[0].transform(verification_rows(pipeline, 30))
    tree = pipeline[-1].estimators_[0].tree_
    nodes = tree.feature >= 0
    splits = set(zip(tree.feature[nodes], tree.threshold[nodes], strict=True))
    near = [
        feature
        for feature, threshold in splits
        if np.isclose(scaled[:, feature], threshold, rtol=1e-7, atol=1e-9).any()
    ]
    assert len(near) >= len(splits) // 2


@pytest.mark.parametrize("scaler", [StandardScaler, MinMaxScaler])
def test_a_forest_behind_a_scaler_is_served_with_scikit_learns_answers(scaler):
    """The scaler runs in float64 and its output is cast for the trees, as in scikit-learn.

    Scaled in float32 instead, a row near a split lands on its other side: that form fails the check.
    """
    data, target = load_breast_cancer(return_X_y=True)
    pipeline = make_pipeline(scaler(), RandomForestClassifier(50, random_state=0)).fit(data, target)
    features = tuple(Feature(f"f{index}") for index in range(30))
    meta = ModelMeta(name="f", version=1, sha256="0" * 64, format="skops", schema=features, classes=(0, 1))
    model = Model.from_estimator(pipeline, meta)
    chained, float32_only = model.plans
    assert model.verified_onnx() is chained
    model.plans = [float32_only]
    assert model.verified_onnx() is None

    served = Model.from_onnx(chained.onnx_bytes, ModelMeta(**{**vars(meta), "format": "onnx"}))
    served.start()
    assert served.backend_name == "onnxruntime (float64 input, float32 trees)"
    rows = np.vstack([data, verification_rows(pipeline, 30)])
    labels, proba = served.both_for(rows)
    assert labels == pipeline.predict(rows).tolist()
    np.testing.assert_allclose(proba, pipeline.predict_proba(rows), rtol=0, atol=1e-5)


def test_a_graph_that_is_not_linear_gets_no_kernel():
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y)
    plan = Model.from_estimator(forest, meta_for(forest)).plans[0]
    assert onnx_graph.linear_kernel(plan.onnx_bytes) is None
    assert onnx_graph.class_labels(plan.onnx_bytes) == [0, 1, 2]


def test_the_kernel_is_checked_not_trusted(monkeypatch):
    """A kernel read wrongly from the graph is refused by the check against ONNX Runtime."""
    estimator = LINEAR_MODELS["multinomial"]()
    read = onnx_graph.linear_kernel

    def skewed(data):
        kernel = read(data)
        kernel.intercepts[0] += 0.5
        return kernel

    monkeypatch.setattr(onnx_graph, "linear_kernel", skewed)
    model = Model.from_onnx(onnx_form(estimator), meta_for(estimator, "onnx"))
    model.start()
    assert model.row_kernel is None and model.backend_name == "onnxruntime (float64)"


def test_the_server_answers_from_the_onnx_form_as_from_the_skops_file(tmp_path, start_server):
    estimator = LogisticRegression(max_iter=1000).fit(X, Y)
    skops_env = write_model(tmp_path, "iris", estimator, IRIS_FEATURES, IRIS_LABELS)
    data = onnx_form(estimator)
    (tmp_path / "iris.onnx").write_bytes(data)
    document = orjson.loads(skops_env["SERVING_MODEL_META"])
    document.update(format="onnx", sha256=hashlib.sha256(data).hexdigest(), trusted_types=[])
    onnx_env = {
        "SERVING_MODEL_URI": str(tmp_path / "iris.onnx"),
        "SERVING_MODEL_META": orjson.dumps(document).decode(),
    }
    servers = [start_server(skops_env).wait_ready(), start_server(onnx_env).wait_ready()]
    bodies = [
        SETOSA,
        VIRGINICA,
        {"inputs": [list(SETOSA.values()), list(VIRGINICA.values())], "return": "both"},
        {"instances": [VIRGINICA, SETOSA], "return": "probabilities"},
    ]
    for body in bodies:
        answers = [httpx.post(f"{server.url}/predict", json=body).json() for server in servers]
        assert answers[0] == answers[1]
    described = httpx.get(f"{servers[1].url}/v1/model").json()
    assert described["format"] == "onnx" and described["classes"] == [0, 1, 2]
    assert described["backend"] == (
        "onnxruntime (float64), NumPy for batches of up to 128 rows + Python linear kernel for one row"
    )


def test_serving_an_onnx_form_never_imports_scikit_learn(tmp_path):
    estimator = LogisticRegression(max_iter=1000).fit(X, Y)
    data = onnx_form(estimator)
    document = orjson.dumps({**meta_doc(estimator), "sha256": hashlib.sha256(data).hexdigest()}).decode()
    probe = f"""
import sys
from serving.config import ModelMeta
from serving.model import Model
meta = ModelMeta.from_json({document!r})
model = Model.from_onnx(open({str(tmp_path / "m.onnx")!r}, "rb").read(), meta)
model.start()
print(model.row([5.1, 3.5, 1.4, 0.2], False)[0], "sklearn" in sys.modules, "skops" in sys.modules)
"""
    (tmp_path / "m.onnx").write_bytes(data)
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False", "False"]


def meta_doc(estimator) -> dict:
    return {
        "name": "iris",
        "version": 1,
        "format": "onnx",
        "schema": IRIS_FEATURES,
        "classes": [value.item() for value in estimator.classes_],
    }
