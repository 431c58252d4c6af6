"""ONNX forms of the zoo's families: which backend serves each, and that it answers as scikit-learn."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import skops.io as sio
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from endpoints.artifacts import onnx_form
from serving.backends import verification_rows
from serving.config import Feature, ModelMeta
from serving.model import Model
from serving.onnx_converters import MISSING_TEXT
from serving.tests.support import write_model
from tests.zoo import CENSUS_FEATURES, FAMILIES, census_family, census_schema, frame_of, held_out_rows

# scikit-learn 1.9 deprecates SVC(probability=True); teams still ship it.
pytestmark = pytest.mark.filterwarnings("ignore:The `probability` parameter:FutureWarning")

FLOAT64 = "onnxruntime (float64)"
TREES = "onnxruntime (float64 input, float32 trees)"
SPLITS = "onnxruntime (float64 input and splits, float32 scores)"
# What serves each family's census pipeline.
SERVED_BY = {
    "logistic": FLOAT64,
    "ridge": FLOAT64,
    "forest": TREES,
    "hist-gradient-boosting": SPLITS,
    "hist-gradient-boosting-regressor": SPLITS,
    "hist-gradient-boosting-categories": "scikit-learn",
    # ONNX's SVMs and linear classifiers keep their weights in float32: on the census pipelines
    # they label rows on the decision boundary otherwise, and scikit-learn serves them.
    "svc": "scikit-learn",
    "svc-probabilities": "scikit-learn",
    "linear-svc": "scikit-learn",
    "xgboost": TREES,
    "xgboost-regressor": TREES,
    "lightgbm": SPLITS,
    "lightgbm-regressor": SPLITS,
}


def census_model(estimator) -> Model:
    features = tuple(Feature.from_json(entry, "schema") for entry in census_schema())
    classes = tuple(getattr(estimator, "classes_", ()))
    meta = ModelMeta(
        name="census", version=1, sha256="0" * 64, format="skops", schema=features, classes=classes
    )
    return Model.from_estimator(estimator, meta)


def validated(rows: list[dict]) -> np.ndarray:
    """JSON rows as validation hands them to the model: objects, NaN for missing."""
    return np.array(
        [[np.nan if row.get(name) is None else row[name] for name in CENSUS_FEATURES] for row in rows],
        dtype=object,
    )


def assert_answers_as_scikit_learn(model: Model, estimator, rows: list[dict]) -> None:
    table, frame = validated(rows), frame_of(rows)
    tolerance = 1e-9 if model.backend_name == FLOAT64 else 1e-5
    if model.is_classifier:
        labels, proba = model.both_for(table) if model.has_proba else (model.labels_for(table), None)
        assert labels == [model.label_of[value] for value in estimator.predict(frame).tolist()]
        if proba is not None:
            np.testing.assert_allclose(proba, estimator.predict_proba(frame), rtol=0, atol=tolerance)
        assert [model.row(list(row), False)[0] for row in table] == labels
    else:
        expected = estimator.predict(frame)
        np.testing.assert_allclose(model.labels_for(table), expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_served_by_its_onnx_form_or_scikit_learn_with_scikit_learns_answers(family):
    estimator = census_family(family)
    model = census_model(estimator)
    model.start()
    assert model.backend_name == SERVED_BY[family], model.refusals
    rows = held_out_rows()
    rows += [{**row, name: None} for row in rows[:8] for name in CENSUS_FEATURES]  # one missing at a time
    assert_answers_as_scikit_learn(model, estimator, rows)


def test_the_check_aims_at_the_splits_of_the_numeric_columns():
    from serving.onnx_tables import check_parts

    estimator = census_family("hist-gradient-boosting")
    parts = dict(check_parts(estimator, census_model(estimator).features))
    assert "rows with a missing workclass" in parts and "rows with a missing age" in parts
    near = parts["rows on and around its splits"]
    ages = np.asarray(near[:, 0], dtype=np.float64)
    splits = [
        threshold
        for predictors in estimator[-1]._predictors
        for tree in predictors
        for feature, threshold, leaf in tree.nodes[["feature_idx", "num_threshold", "is_leaf"]]
        if feature == 0 and not leaf
    ]
    scaler = estimator[0].named_transformers_["numbers"]["scale"]
    in_years = np.asarray(splits) * scaler.scale_[0] + scaler.mean_[0]
    assert np.isclose(ages[:, None], in_years[None, :], rtol=1e-12, atol=0).any(axis=0).mean() > 0.5


def test_a_form_that_differs_is_refused_and_the_rows_it_differs_on_are_named():
    estimator = census_family("hist-gradient-boosting")
    model = census_model(estimator)
    model.plans = [plan for plan in model.plans if plan.precision == "float32"]
    assert model.verified_onnx() is None
    assert model.refusals == [
        "the float32 form's answers differ from scikit-learn's on rows on and around its splits"
    ]
    model.start()
    assert model.backend_name == "scikit-learn"


def test_the_version_note_says_which_form_serves_or_why_none_does():
    schema = census_schema()
    assert onnx_form(census_family("hist-gradient-boosting"), schema) == (
        None,
        "ONNX Runtime serves it (float64 input and splits, float32 scores), converted when the server "
        "starts: it gives scikit-learn's answers on every known value, each missing column and rows on "
        "its splits.",
    )
    assert onnx_form(census_family("hist-gradient-boosting-categories"), schema)[1] == (
        "No ONNX form: skl2onnx converts histogram gradient boosting's category splits as number "
        "thresholds; scikit-learn serves it."
    )


def test_text_that_stands_for_a_missing_value_is_answered_by_scikit_learn():
    estimator = census_family("logistic")
    model = census_model(estimator)
    model.start()
    rows = held_out_rows()[:3]
    rows[1]["workclass"] = MISSING_TEXT
    assert model.backend_name == FLOAT64
    assert_answers_as_scikit_learn(model, estimator, rows)


X, Y = load_iris(return_X_y=True)
CANCER, CANCER_Y = load_breast_cancer(return_X_y=True)
DIABETES, DIABETES_Y = load_diabetes(return_X_y=True)
PLAIN = {
    "hist-gradient-boosting": (lambda: HistGradientBoostingClassifier(max_iter=30).fit(X, Y), X, SPLITS),
    "hist-gradient-boosting-binary": (
        lambda: HistGradientBoostingClassifier(max_iter=30).fit(CANCER, CANCER_Y),
        CANCER,
        SPLITS,
    ),
    "hist-gradient-boosting-regressor": (
        lambda: HistGradientBoostingRegressor(max_iter=30).fit(DIABETES, DIABETES_Y),
        DIABETES,
        SPLITS,
    ),
    "svc": (lambda: make_pipeline(StandardScaler(), SVC()).fit(X, Y), X, FLOAT64),
    "svc-probabilities": (
        lambda: make_pipeline(StandardScaler(), SVC(probability=True, random_state=0)).fit(X, Y),
        X,
        "onnxruntime (float32)",
    ),
    "linear-svc": (  # float32 weights: refused on the decision boundary
        lambda: make_pipeline(StandardScaler(), LinearSVC()).fit(CANCER, CANCER_Y),
        CANCER,
        "scikit-learn",
    ),
}


@pytest.mark.parametrize("family", sorted(PLAIN))
def test_plain_models_of_each_family_get_an_onnx_form_with_scikit_learns_answers(family):
    make, data, served_by = PLAIN[family]
    estimator = make()
    features = tuple(Feature(f"x{index}") for index in range(data.shape[1]))
    classes = tuple(value.item() for value in getattr(estimator, "classes_", ()))
    meta = ModelMeta(
        name="plain", version=1, sha256="0" * 64, format="skops", schema=features, classes=classes
    )
    model = Model.from_estimator(estimator, meta)
    model.start()
    assert model.backend_name == served_by
    rows = np.vstack([data, verification_rows(estimator, data.shape[1]), data * 1.5])
    tolerance = 1e-9 if served_by == FLOAT64 else 1e-5
    if model.is_classifier:
        assert model.labels_for(rows) == estimator.predict(rows).tolist()
        if model.has_proba:
            np.testing.assert_allclose(
                model.both_for(rows)[1], estimator.predict_proba(rows), rtol=0, atol=tolerance
            )
    else:
        np.testing.assert_allclose(
            model.labels_for(rows), estimator.predict(rows), rtol=tolerance, atol=tolerance
        )


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
def test_booster_wrappers_load_from_skops_trusting_exactly_the_listed_types(family):
    estimator = census_family(family)
    data = sio.dumps(estimator)
    listed = sio.get_untrusted_types(data=data)
    library = "xgboost" if family == "xgboost" else "lightgbm"
    assert any(name.startswith(library) for name in listed)
    loaded = sio.loads(data, trusted=listed)
    rows = held_out_rows()
    assert loaded.predict(frame_of(rows)).tolist() == estimator.predict(frame_of(rows)).tolist()


def test_a_server_answers_a_lightgbm_census_pipeline_with_onnx_runtime(tmp_path, start_server):
    estimator = census_family("lightgbm")
    env = write_model(tmp_path, "census", estimator, CENSUS_FEATURES, schema=census_schema())
    server = start_server(env).wait_ready(60)
    described = httpx.get(f"{server.url}/v1/model", timeout=10).json()
    assert described["backend"] == SPLITS
    rows = held_out_rows()
    answer = httpx.post(f"{server.url}/predict", json={"instances": rows, "return": "both"}, timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["predictions"] == estimator.predict(frame_of(rows)).tolist()
