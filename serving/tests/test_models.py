"""Other kinds of model, other artifact formats, and artifacts the server must refuse."""

import hashlib

import httpx
import joblib
import numpy as np
import orjson
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.svm import LinearSVC

from serving.tests.support import IRIS_FEATURES, IRIS_LABELS, SETOSA, Server, stop_all, write_model

HOUSE = ["rooms", "age", "distance"]


@pytest.fixture(scope="module")
def servers(model_dir, iris_env, tmp_path_factory):
    """A regressor, a classifier without predict_proba, a trusted joblib file and an ONNX file."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    regressor = LinearRegression().fit(x, x @ np.array([3.0, -1.0, 0.5]) + 2.0)
    iris = load_iris()
    margin_only = LinearSVC().fit(iris.data, iris.target)
    joblib_path = model_dir / "iris.joblib"
    joblib.dump(margin_only, joblib_path)
    joblib_meta = {
        **orjson.loads(iris_env["SERVING_MODEL_META"]),
        "format": "joblib",
        "sha256": hashlib.sha256(joblib_path.read_bytes()).hexdigest(),
    }
    # An ONNX artifact as skl2onnx writes it by default (probabilities as a ZipMap).
    from skl2onnx import to_onnx

    onnx_path = model_dir / "iris.onnx"
    frame_free = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    onnx_path.write_bytes(to_onnx(frame_free, iris.data[:1].astype(np.float32)).SerializeToString())
    onnx_meta = {
        **orjson.loads(iris_env["SERVING_MODEL_META"]),
        "format": "onnx",
        "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
    }
    logs = tmp_path_factory.mktemp("models")
    started = {
        "regressor": Server(write_model(model_dir, "house", regressor, HOUSE), logs / "regressor.log"),
        "margin_only": Server(
            write_model(model_dir, "svc", margin_only, IRIS_FEATURES, IRIS_LABELS), logs / "svc.log"
        ),
        "joblib": Server(
            {
                "SERVING_MODEL_URI": f"file://{joblib_path}",
                "SERVING_MODEL_META": orjson.dumps(joblib_meta).decode(),
                "SERVING_ALLOW_PICKLE": "true",
            },
            logs / "joblib.log",
        ),
        "onnx": Server(
            {"SERVING_MODEL_URI": str(onnx_path), "SERVING_MODEL_META": orjson.dumps(onnx_meta).decode()},
            logs / "onnx.log",
        ),
    }
    for server in started.values():
        server.wait_ready()
    yield started
    stop_all(started.values())


def test_a_regressor_predicts_numbers(servers):
    url = servers["regressor"].url
    answer = httpx.post(f"{url}/predict", json={"rooms": 1.0, "age": 1.0, "distance": 2.0}).json()
    assert answer == {"target": pytest.approx(5.0)}
    answer = httpx.post(f"{url}/predict", json={"inputs": [[0, 0, 0], [1, 0, 0]]}).json()
    assert answer == {"predictions": [pytest.approx(2.0), pytest.approx(5.0)]}
    assert httpx.get(f"{url}/v1/model").json()["task"] == "regression"


@pytest.mark.parametrize("mode", ["probabilities", "both"])
def test_a_regressor_refuses_to_return_probabilities(servers, mode):
    response = httpx.post(f"{servers['regressor'].url}/predict", json={"inputs": [[0, 0, 0]], "return": mode})
    assert response.status_code == 422
    assert "regressor" in response.json()["fields"]["return"]


def test_a_classifier_without_predict_proba_gives_labels_and_refuses_probabilities(servers):
    url = servers["margin_only"].url
    assert httpx.post(f"{url}/predict", json=SETOSA).json() == {"target": "setosa"}
    response = httpx.post(f"{url}/predict", json={**SETOSA, "return": "probabilities"})
    assert response.status_code == 422
    assert "does not give probabilities" in response.json()["error"]


def test_a_trusted_joblib_artifact_loads_with_a_loud_warning(servers):
    server = servers["joblib"]
    assert httpx.post(f"{server.url}/predict", json=SETOSA).json() == {"target": "setosa"}
    assert "LOADING A JOBLIB ARTIFACT" in server.output()


def test_an_onnx_artifact_serves_labels_and_probabilities_from_the_metadata_classes(servers):
    url = servers["onnx"].url
    answer = httpx.post(f"{url}/predict", json=SETOSA).json()
    assert answer["target"] == "setosa"
    assert answer["setosa_probability"] > 0.9
    assert httpx.post(f"{url}/predict", json={"inputs": [list(SETOSA.values())] * 2}).json() == {
        "predictions": ["setosa", "setosa"]
    }
    assert httpx.get(f"{url}/v1/model").json()["backend"].startswith("onnxruntime")


def refused(env: dict, tmp_path) -> str:
    """Start a server that must refuse to start; return what it said."""
    server = Server(env, tmp_path / "refused.log")
    assert server.exit_code(timeout=30) != 0
    return server.output()


def test_a_sha256_mismatch_refuses_to_start(iris_env, tmp_path):
    meta = {**orjson.loads(iris_env["SERVING_MODEL_META"]), "sha256": "0" * 64}
    said = refused({**iris_env, "SERVING_MODEL_META": orjson.dumps(meta).decode()}, tmp_path)
    assert "sha256" in said and "refusing to serve it" in said


def test_a_pickle_artifact_is_refused_unless_allowed(iris_env, model_dir, tmp_path):
    path = model_dir / "iris.joblib"  # written by the servers fixture's joblib case, or now
    if not path.exists():
        joblib.dump(LinearSVC().fit(load_iris().data, load_iris().target), path)
    meta = {
        **orjson.loads(iris_env["SERVING_MODEL_META"]),
        "format": "pickle",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    said = refused(
        {"SERVING_MODEL_URI": str(path), "SERVING_MODEL_META": orjson.dumps(meta).decode()}, tmp_path
    )
    assert "SERVING_ALLOW_PICKLE=true" in said


def test_a_missing_artifact_or_bad_metadata_refuses_to_start(iris_env, tmp_path):
    said = refused({**iris_env, "SERVING_MODEL_URI": str(tmp_path / "nothing.skops")}, tmp_path)
    assert "does not exist" in said
    said = refused({**iris_env, "SERVING_MODEL_META": "{not json"}, tmp_path)
    assert "SERVING_MODEL_META is not valid JSON" in said


def test_an_unusable_access_file_refuses_to_start(iris_env, tmp_path):
    policy = tmp_path / "access.json"
    policy.write_text('{"mode": "everyone"}')
    said = refused({**iris_env, "SERVING_ACCESS_FILE": str(policy)}, tmp_path)
    assert "SERVING_ACCESS_FILE" in said


class _Probabilities:
    """A backend that answers fixed probabilities."""

    name = "fixed"

    def __init__(self, proba):
        self.proba = np.asarray(proba, dtype=np.float32)

    def predict_proba(self, rows):
        return self.proba


@pytest.mark.parametrize("classes", [[0, 1], ["no", "yes"], [0, 1, 2], ["a", "b", "c"]])
def test_float32_labels_follow_probabilities_and_ties_go_to_the_first_class(classes):
    from serving.model import LabelsFromProbabilities

    rows = [[0.5, 0.5000001], [0.7, 0.3], [0.2, 0.8], [0.4999, 0.5001]]
    if len(classes) == 3:
        rows = [[*row[:1], 0.0, *row[1:]] for row in rows]
    labels = LabelsFromProbabilities(_Probabilities(rows), classes).predict(np.zeros((4, 1)))
    first, last = classes[0], classes[-1]
    assert labels.tolist() == [first, first, last, last]
    assert [type(label) for label in labels.tolist()] == [type(first)] * 4
