"""The model zoo, end to end: each family uploaded through the REST API (its schema read from the
model), deployed on the local runtime by a real worker, and called over HTTP in every request
form; every answer is scikit-learn's, on held-out rows with missing values and unseen values:
labels exactly, scores within the precision the version's ONNX form is checked to (1e-5 where it
scores in float32)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import skops.io as sio
import tritonclient.http as triton
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from endpoints.models import Deployment, DeploymentStatus
from tests.integration.test_whole_loop import wait_for_deployment
from tests.zoo import CENSUS_FEATURES, FAMILIES, census_family, frame_of, held_out_rows

pytestmark = [
    pytest.mark.integration,
    # scikit-learn 1.9 deprecates SVC(probability=True); teams still ship it.
    pytest.mark.filterwarnings("ignore:The `probability` parameter:FutureWarning"),
]

TOLERANCE = 1e-5


@pytest.mark.parametrize("name", FAMILIES)
def test_a_zoo_model_uploaded_deployed_and_called_answers_as_scikit_learn(celery_worker_process, admin, name):
    client = APIClient()
    client.force_authenticate(admin)
    estimator = census_family(name)
    data = sio.dumps(estimator)
    model = client.post("/api/v1/models/", {"name": name}, format="json").json()
    uploaded = client.post(
        f"/api/v1/models/{model['id']}/versions/",
        {
            "artifact": SimpleUploadedFile(f"{name}.skops", data),
            "trusted_types": ",".join(sio.get_untrusted_types(data=data)),
        },
        format="multipart",
    )
    assert uploaded.status_code == 201, uploaded.json()
    version = uploaded.json()
    schema = {feature["name"]: feature for feature in version["input_schema"]}
    assert schema["workclass"]["type"] == "string" and schema["workclass"]["nullable"] is True
    assert "Private" in schema["workclass"]["categories"] and schema["age"]["type"] == "number"

    client.post("/api/v1/endpoints/", {"name": name, "access_mode": "open"}, format="json")
    started = client.post(
        f"/api/v1/endpoints/{name}/deploy/", {"model_version": version["id"]}, format="json"
    )
    deployment = wait_for_deployment(started.json()["id"], timeout=120)
    assert deployment.status == DeploymentStatus.READY, (deployment.error, celery_worker_process.log_text())
    url = Deployment.objects.get(pk=deployment.pk).resources["url"]

    rows = held_out_rows()
    expected = estimator.predict(frame_of(rows)).tolist()
    classifier = hasattr(estimator, "classes_")
    for row, answer in zip(rows, expected, strict=True):
        body = httpx.post(f"{url}/predict", json=row, timeout=10).json()
        assert body["target"] == (
            answer if classifier else pytest.approx(answer, rel=TOLERANCE, abs=TOLERANCE)
        )
    lists = {"inputs": [[row[feature] for feature in CENSUS_FEATURES] for row in rows], "return": "label"}
    forms = [lists, {"instances": rows, "return": "label"}, {"inputs": rows, "return": "label"}]
    for form in forms:
        predictions = httpx.post(f"{url}/predict", json=form, timeout=10).json()["predictions"]
        assert predictions == (
            expected if classifier else pytest.approx(expected, rel=TOLERANCE, abs=TOLERANCE)
        )
    if hasattr(estimator, "predict_proba"):
        proba = estimator.predict_proba(frame_of(rows))
        both = httpx.post(f"{url}/predict", json={"inputs": rows, "return": "probabilities"}, timeout=10)
        by_label = [row[str(label)] for row in both.json()["predictions"] for label in estimator.classes_]
        assert by_label == pytest.approx(proba.ravel().tolist(), abs=TOLERANCE)
    assert_open_inference_answers(url, name, rows, expected, classifier)


def assert_open_inference_answers(url: str, name: str, rows: list[dict], expected: list, classifier: bool):
    """One tensor per feature (text as BYTES), in JSON with nulls for missing values, and from
    tritonclient in the binary extension for the rows with every value."""
    output = "label" if classifier else "predict"
    kinds = {
        tensor["name"]: tensor["datatype"] for tensor in httpx.get(f"{url}/v2/models/{name}").json()["inputs"]
    }
    inputs = [
        {
            "name": feature,
            "datatype": kinds[feature],
            "shape": [len(rows)],
            "data": [row[feature] for row in rows],
        }
        for feature in CENSUS_FEATURES
    ]
    answer = httpx.post(
        f"{url}/v2/models/{name}/infer", json={"inputs": inputs, "outputs": [{"name": output}]}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert_answers(answer.json()["outputs"][0]["data"], expected, classifier)

    complete = [index for index, row in enumerate(rows) if None not in row.values()]
    client = triton.InferenceServerClient(url=url.removeprefix("http://"))
    tensors = []
    for feature in CENSUS_FEATURES:
        values = [rows[index][feature] for index in complete]
        tensor = triton.InferInput(feature, [len(values)], kinds[feature])
        tensor.set_data_from_numpy(
            np.array(values, dtype=object if kinds[feature] == "BYTES" else np.float64)
        )
        tensors.append(tensor)
    result = client.infer(name, tensors, outputs=[triton.InferRequestedOutput(output, binary_data=True)])
    answers = [
        value.decode() if type(value) is bytes else value for value in result.as_numpy(output).tolist()
    ]
    assert_answers(answers, [expected[index] for index in complete], classifier)
    client.close()


def assert_answers(answers: list, expected: list, classifier: bool) -> None:
    assert answers == (expected if classifier else pytest.approx(expected, rel=TOLERANCE, abs=TOLERANCE))
