"""The benchmark's models and request bodies, written as the portal would hand them to serving."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_LABELS = {"0": "setosa", "1": "versicolor", "2": "virginica"}
BATCH_ROWS = 64


@dataclass(frozen=True)
class Workload:
    """A model file with its SERVING_MODEL_META, and the body each request posts (where, and how)."""

    name: str
    path: Path
    meta: dict
    body: bytes
    rows_per_request: int
    route: str = "/predict"
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)

    def env(self) -> dict:
        return {"SERVING_MODEL_URI": str(self.path), "SERVING_MODEL_META": orjson.dumps(self.meta).decode()}


def _write(directory: Path, name: str, estimator, features: list[str], label_map: dict) -> tuple[Path, dict]:
    import skops.io as sio

    data = sio.dumps(estimator)
    path = directory / f"{name}.skops"
    path.write_bytes(data)
    meta = {
        "name": name,
        "version": 1,
        "sha256": hashlib.sha256(data).hexdigest(),
        "format": "skops",
        "schema": [{"name": feature, "type": "number"} for feature in features],
        "classes": np.asarray(getattr(estimator, "classes_", [])).tolist(),  # a regressor has none
        "label_map": label_map,
        "trusted_types": sio.get_untrusted_types(data=data),
    }
    return path, meta


def _iris(directory: Path, name: str = "iris") -> tuple[Path, dict]:
    """LogisticRegression fitted on iris with named features, written as `name`.skops."""
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    frame = pd.DataFrame(iris.data, columns=IRIS_FEATURES)
    model = LogisticRegression(max_iter=1000).fit(frame, iris.target)
    return _write(directory, name, model, IRIS_FEATURES, IRIS_LABELS)


def iris_single_row(directory: Path) -> Workload:
    """The iris LogisticRegression; one named-feature row per request."""
    path, meta = _iris(directory)
    body = orjson.dumps(dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True)))
    return Workload("iris 1 row", path, meta, body, 1)


def infer_batches(directory: Path) -> dict[str, tuple[Workload, Workload]]:
    """The same 64 rows per request to the Open Inference Protocol route, as one FP64 tensor: in
    JSON (outputs in JSON), and in the binary tensor data extension with every output in binary,
    as tritonclient sends by default. For the iris LogisticRegression (4 features) and a
    StandardScaler + LogisticRegression on breast_cancer (30 features)."""
    from sklearn.datasets import load_breast_cancer, load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cancer = load_breast_cancer()
    features = [name.replace(" ", "_") for name in cancer.feature_names]
    scaled = make_pipeline(StandardScaler(), LogisticRegression()).fit(cancer.data, cancer.target)
    models = {
        "iris": (*_iris(directory, "iris-infer"), load_iris().data),
        "cancer": (*_write(directory, "cancer-linear", scaled, features, {}), cancer.data),
    }
    workloads = {}
    for label, (path, meta, data) in models.items():
        rows = data[np.random.default_rng(0).choice(len(data), BATCH_ROWS, replace=False)]
        route = f"/v2/models/{meta['name']}/infer"
        tensor = {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64"}
        json_body = orjson.dumps({"inputs": [{**tensor, "data": rows.ravel().tolist()}]})
        raw = rows.astype("<f8").tobytes()
        header = orjson.dumps(
            {
                "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
                "parameters": {"binary_data_output": True},
            }
        )
        binary_headers = (
            ("Content-Type", "application/octet-stream"),
            ("Inference-Header-Content-Length", str(len(header))),
        )
        name = f"infer {label} 64 rows"
        workloads[label] = (
            Workload(f"{name} JSON", path, meta, json_body, BATCH_ROWS, route),
            Workload(f"{name} binary", path, meta, header + raw, BATCH_ROWS, route, binary_headers),
        )
    return workloads


def cancer_batches(directory: Path) -> Workload:
    """A 100-tree RandomForest on breast_cancer; 64 rows per request as {"inputs": [[...], ...]}."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    data = load_breast_cancer()
    features = [name.replace(" ", "_") for name in data.feature_names]
    model = RandomForestClassifier(n_estimators=100, random_state=0).fit(data.data, data.target)
    path, meta = _write(directory, "cancer", model, features, {"0": "malignant", "1": "benign"})
    rows = np.random.default_rng(0).choice(len(data.data), BATCH_ROWS, replace=False)
    body = orjson.dumps({"inputs": data.data[rows].round(4).tolist()})
    return Workload("cancer 64 rows", path, meta, body, BATCH_ROWS)


def _write_table(directory: Path, name: str, estimator, schema: list[dict]) -> tuple[Path, dict]:
    path, meta = _write(directory, name, estimator, [], {})
    meta["schema"] = schema
    return path, meta


def table_model(directory: Path, name: str, estimator) -> tuple[Path, dict]:
    """A model fitted on a table, written as skops with the schema the portal reads from it."""
    from endpoints.artifacts import inspect_artifact

    path, meta = _write_table(directory, name, estimator, [])
    meta["schema"] = inspect_artifact(
        path, "skops", trust_code=False, trusted_types=meta["trusted_types"]
    ).input_schema
    return path, meta


def census_workloads(directory: Path) -> list[Workload]:
    """The census-like pipeline (imputers, scaler, one-hot encoder, logistic regression) with its
    text and nullable features: one named row per request, and 64 rows as {"inputs": [[...], ...]}."""
    from tests.zoo import CENSUS_FEATURES, census, census_pipeline

    path, meta = table_model(directory, "census", census_pipeline())
    frame, _ = census(rows=BATCH_ROWS, seed=11)
    rows = [
        [None if value != value else value for value in record] for record in frame.itertuples(index=False)
    ]
    one = dict(zip(CENSUS_FEATURES, rows[0], strict=True))
    return [
        Workload("census 1 row", path, meta, orjson.dumps(one), 1),
        Workload("census 64 rows", path, meta, orjson.dumps({"inputs": rows}), BATCH_ROWS),
    ]


def hgb_workloads(directory: Path) -> list[Workload]:
    """HistGradientBoostingClassifier on breast_cancer: one named row, and 64-row batches."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier

    data = load_breast_cancer()
    features = [name.replace(" ", "_") for name in data.feature_names]
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(data.data, data.target)
    path, meta = _write(directory, "hgb", model, features, {"0": "malignant", "1": "benign"})
    rows = np.random.default_rng(0).choice(len(data.data), BATCH_ROWS, replace=False)
    one = dict(zip(features, data.data[rows[0]].round(4).tolist(), strict=True))
    return [
        Workload("hgb 1 row", path, meta, orjson.dumps(one), 1),
        Workload(
            "hgb 64 rows", path, meta, orjson.dumps({"inputs": data.data[rows].round(4).tolist()}), BATCH_ROWS
        ),
    ]
