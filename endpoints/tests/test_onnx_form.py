"""The ONNX form stored at upload, deploys that serve it, and .onnx uploads."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from django.urls import reverse
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from endpoints.demo import IRIS_FEATURES, IRIS_LABELS
from endpoints.models import ModelVersion
from endpoints.services.deployments import model_spec_for
from endpoints.tests.test_api_models import api, upload
from serving.backends import verification_rows
from serving.config import ModelMeta
from serving.model import Model

X, Y = load_iris(return_X_y=True)
SCHEMA = json.dumps(IRIS_FEATURES)
TREE = "sklearn.tree._tree.Tree"  # the one type a forest's skops file lists beyond skops' default trust


@pytest.fixture
def iris_model(admin):
    from endpoints.services.versions import ml_model_create

    return ml_model_create(user=admin, name="iris")


def iris_onnx(dtype=np.float32) -> bytes:
    """What a team exports with skl2onnx themselves (float32: the ai.onnx.ml LinearClassifier)."""
    from skl2onnx import to_onnx

    model = LogisticRegression(max_iter=1000).fit(X, Y)
    return to_onnx(model, X[:1].astype(dtype), options={id(model): {"zipmap": False}}).SerializeToString()


def test_an_uploaded_skops_model_gets_a_verified_onnx_form_that_deploys_serve(iris_version):
    assert iris_version.serves_onnx and iris_version.format == "skops"
    data = Path(iris_version.onnx_artifact.path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == iris_version.onnx_sha256
    assert iris_version.onnx_note == "ONNX (float64), gives scikit-learn's answers on the check sample."
    spec = model_spec_for(iris_version)
    assert (spec.format, spec.sha256, spec.artifact_path) == (
        "onnx",
        iris_version.onnx_sha256,
        iris_version.onnx_artifact.path,
    )
    assert spec.trusted_types == () and spec.classes == (0, 1, 2) and spec.label_map == IRIS_LABELS


def test_a_model_skl2onnx_cannot_convert_is_served_by_scikit_learn(admin, iris_model):
    response = upload(
        api(admin), iris_model, sio.dumps(KernelRidge().fit(X, X[:, 0])), "ridge.skops", input_schema=SCHEMA
    )
    assert response.status_code == 201, response.json()
    assert response.json()["onnx_sha256"] == ""
    assert (
        response.json()["onnx_note"]
        == "No ONNX form: skl2onnx cannot convert this model; scikit-learn serves it."
    )
    version = ModelVersion.objects.get()
    assert not version.serves_onnx and model_spec_for(version).format == "skops"


def test_an_onnx_form_that_disagrees_with_scikit_learn_is_not_kept(monkeypatch):
    """Whatever the converter gives is checked: here it converts a different model.

    The check runs in the sandbox; it is driven here in this process, where the converter can be
    swapped.
    """
    import serving.model
    from endpoints.artifacts import onnx_form

    convert = serving.model.convert_to_onnx
    other = LogisticRegression(max_iter=1000).fit(X, Y[::-1])
    monkeypatch.setattr(serving.model, "convert_to_onnx", lambda estimator, width: convert(other, width))
    model = LogisticRegression(max_iter=1000).fit(X, Y)
    schema = [{"name": name, "type": "number"} for name in IRIS_FEATURES]
    onnx, note = onnx_form(model, schema)
    assert onnx is None
    assert note.startswith("No ONNX form: the converted model's answers differ")


def test_a_forest_whose_votes_tie_keeps_its_onnx_form(admin, iris_model):
    """50 trees can split 25 to 25: labels follow scikit-learn, first class wins, in float32 too."""
    data, target = load_breast_cancer(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=50, random_state=0).fit(data, target)
    schema = json.dumps([f"f{index}" for index in range(30)])
    response = upload(
        api(admin), iris_model, sio.dumps(forest), "forest.skops", input_schema=schema, trusted_types=TREE
    )
    assert response.status_code == 201, response.json()
    assert response.json()["onnx_note"].startswith("ONNX (float32)")
    rows = np.vstack([data, verification_rows(forest, 30)])
    assert np.isclose(forest.predict_proba(rows)[:, 0], 0.5).sum() >= 3  # ties to break
    served = Model.from_onnx(
        Path(ModelVersion.objects.get().onnx_artifact.path).read_bytes(),
        ModelMeta(name="f", version=1, sha256="0" * 64, format="onnx", classes=(0, 1)),
    )
    served.start()
    assert served.labels_for(rows) == forest.predict(rows).tolist()


def test_a_scaled_forest_keeps_an_onnx_form_that_scales_in_float64(admin, iris_model):
    data, target = load_breast_cancer(return_X_y=True)
    pipeline = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=20, random_state=0))
    pipeline.fit(data, target)
    schema = json.dumps([f"f{index}" for index in range(30)])
    response = upload(
        api(admin), iris_model, sio.dumps(pipeline), "scaled.skops", input_schema=schema, trusted_types=TREE
    )
    assert response.status_code == 201, response.json()
    assert response.json()["onnx_note"].startswith("ONNX (float64 input, float32 trees)")


def test_an_onnx_file_uploads_with_its_schema_and_deploys_as_itself(admin, iris_model):
    data = iris_onnx()
    labels = json.dumps(IRIS_LABELS)
    response = upload(api(admin), iris_model, data, "iris.onnx", input_schema=SCHEMA, label_map=labels)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["format"] == "onnx" and body["classes"] == [0, 1, 2]
    assert [feature["name"] for feature in body["input_schema"]] == IRIS_FEATURES
    assert body["estimator"].startswith("ONNX (skl2onnx")
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["onnx_sha256"] == ""
    spec = model_spec_for(ModelVersion.objects.get())
    assert (spec.format, spec.sha256) == ("onnx", body["sha256"])
    assert Path(spec.artifact_path).read_bytes() == data


@pytest.mark.parametrize(
    ("data", "fields", "field", "detail"),
    [
        (
            iris_onnx(),
            {},
            "input_schema",
            "ONNX files do not name their features: give the input schema (feature names, in column order).",
        ),
        (
            iris_onnx(),
            {"input_schema": json.dumps(IRIS_FEATURES[:3])},
            "input_schema",
            "The schema names 3 features but the model takes 4.",
        ),
        (b"not a graph at all", {"input_schema": SCHEMA}, "artifact", "This is not a readable ONNX model"),
        (
            iris_onnx(),
            {"input_schema": SCHEMA, "label_map": json.dumps({"7": "seven"})},
            "label_map",
            "The label map names classes the model does not have: ['7']",
        ),
    ],
)
def test_a_bad_onnx_upload_names_the_field_and_saves_nothing(admin, iris_model, data, fields, field, detail):
    response = upload(api(admin), iris_model, data, "model.onnx", **fields)
    assert response.status_code == 422  # of the right form, but no model the portal can serve
    assert response.json()["field"] == field
    assert response.json()["detail"].startswith(detail)
    assert not ModelVersion.objects.exists()


def test_the_version_page_says_what_deploys_serve(client, admin, iris_version):
    client.force_login(admin)
    page = client.get(reverse("endpoints:version-detail", args=["iris", 1])).content.decode()
    assert "Served as" in page and iris_version.onnx_sha256 in page
    assert "gives scikit-learn&#x27;s answers on the check sample" in page
