"""The serving-onnx image's packages serve the portal's ONNX form, fetched from Cloud Storage as on
Cloud Run, with scikit-learn's answers; and what serving imports is what its requirements list."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from endpoints.artifacts import onnx_form
from serving import onnx_graph
from serving.tests.slim import (
    FULL,
    HEAVY,
    SLIM,
    blocked_modules,
    closure,
    owners,
    requirement_names,
    slim_env,
)
from serving.tests.support import IRIS_FEATURES, write_model
from tests.fakes.storage import StorageFake

BUCKET = "portal-artifacts"
X, Y = load_iris(return_X_y=True)
ROWS = np.vstack([X[::7], np.random.default_rng(0).normal(4.0, 2.0, (20, 4))])
MODELS = {
    "linear": (lambda: LogisticRegression(max_iter=1000), 1e-9),
    "forest": (lambda: RandomForestClassifier(30, random_state=0), 1e-5),
}
SCHEMA = [{"name": name, "type": "number"} for name in IRIS_FEATURES]
CLASSES = [0, 1, 2]


@pytest.fixture(scope="module")
def storage():
    fake = StorageFake((BUCKET,)).start()
    yield fake
    fake.stop()


def imported_distributions(record: Path) -> set[str]:
    """The installed distributions the files named in `record` belong to."""
    files = {str(Path(line).resolve()) for line in record.read_text().splitlines()}
    return {owners()[file] for file in files if file in owners()}


def test_the_slim_set_leaves_out_every_heavy_package_the_full_one_installs():
    slim, full = closure(requirement_names(SLIM)), closure(requirement_names(FULL))
    assert slim < full
    missing = blocked_modules(slim)
    assert set(HEAVY) <= missing
    assert not set(HEAVY) & blocked_modules(full)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_the_slim_set_serves_the_onnx_form_with_scikit_learns_answers(kind, storage, start_server, tmp_path):
    make, tolerance = MODELS[kind]
    estimator = make().fit(X, Y)
    data, note = onnx_form(estimator, SCHEMA)
    assert data is not None, note
    digest = hashlib.sha256(data).hexdigest()
    storage.put(BUCKET, f"models/iris/{digest}.onnx", data)
    kernel = onnx_graph.linear_kernel(data)  # as the portal reads it for SERVING_MODEL_META
    meta = {
        "name": "iris",
        "version": 1,
        "sha256": digest,
        "format": "onnx",
        "schema": SCHEMA,
        "classes": [0, 1, 2],
        **({"linear_kernel": kernel.as_json()} if kernel else {}),
    }
    record = tmp_path / "imports.txt"
    server = start_server(
        {
            **slim_env(tmp_path, record),
            "SERVING_MODEL_URI": f"gs://{BUCKET}/models/iris/{digest}.onnx",
            "SERVING_MODEL_META": orjson.dumps({**meta, "classes": CLASSES}).decode(),
            "SERVING_MODEL_CACHE_DIR": str(tmp_path / "cache"),
            "STORAGE_EMULATOR_HOST": storage.endpoint,
        }
    ).wait_ready(timeout=60)

    # The linear model's one-row kernel comes from the portal's reading, with no `onnx` here.
    backend = httpx.get(f"{server.url}/v1/model").json()["backend"]
    assert backend.endswith("+ Python linear kernel for one row") == (kind == "linear"), backend
    one = httpx.post(f"{server.url}/predict", json=dict(zip(IRIS_FEATURES, ROWS[3].tolist(), strict=True)))
    assert one.json()["target"] == estimator.predict(ROWS[3:4]).tolist()[0]
    answer = httpx.post(f"{server.url}/predict", json={"inputs": ROWS.tolist(), "return": "both"}).json()
    assert answer["predictions"] == estimator.predict(ROWS).tolist()
    proba = [[row[str(label)] for label in CLASSES] for row in answer["probabilities"]]
    np.testing.assert_allclose(proba, estimator.predict_proba(ROWS), rtol=0, atol=tolerance)

    listed = set(requirement_names(SLIM))
    imported = imported_distributions(record)
    assert imported <= closure(sorted(listed)), "imported but not installed by requirements-onnx.txt"
    assert listed <= imported, f"listed in requirements-onnx.txt but never imported: {listed - imported}"
    assert "Traceback" not in server.output()


def test_an_upload_that_needs_scikit_learn_cannot_start_with_the_slim_set(start_server, tmp_path):
    """The guard is real: the skops upload of the same model needs what the slim image lacks."""
    env = write_model(tmp_path, "iris", LogisticRegression(max_iter=1000).fit(X, Y), IRIS_FEATURES)
    server = start_server({**slim_env(tmp_path), **env})
    assert server.exit_code() != 0
    assert "in the serving-onnx image" in server.output()
