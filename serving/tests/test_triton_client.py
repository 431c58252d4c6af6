"""NVIDIA's tritonclient.http, pointed at a served iris model, as its users would call it.

It reads the server's and the model's metadata, and infers with tensors in JSON and in the binary
data extension (its default), asking for outputs in binary (its default) and in JSON; the answers
are scikit-learn's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
import skops.io as sio
import tritonclient.http as triton
from sklearn.datasets import load_iris
from tritonclient.utils import InferenceServerException

from serving.tests.support import IRIS_FEATURES, IRIS_LABELS, Server, stop_all

ROWS = load_iris().data[::7]  # 22 rows of every class


@pytest.fixture(scope="module")
def served(iris_env, tmp_path_factory):
    """(client, the estimator the server serves)."""
    meta = orjson.loads(iris_env["SERVING_MODEL_META"])
    estimator = sio.load(Path(iris_env["SERVING_MODEL_URI"]), trusted=meta["trusted_types"])
    server = Server(iris_env, tmp_path_factory.mktemp("triton") / "server.log")
    try:
        server.wait_ready()
        client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        yield client, estimator
        client.close()
    finally:
        stop_all([server])


def expected(estimator, rows: np.ndarray) -> tuple[list[str], np.ndarray]:
    frame = __import__("pandas").DataFrame(rows.astype(np.float64), columns=IRIS_FEATURES)
    labels = [IRIS_LABELS[str(value)] for value in estimator.predict(frame)]
    return labels, estimator.predict_proba(frame)


def labels_of(result) -> list[str]:
    """The label output as text, whether it came as BYTES in binary (bytes) or in JSON (str)."""
    return [value.decode() if type(value) is bytes else value for value in result.as_numpy("label").tolist()]


def test_the_client_reads_the_server_and_model_metadata(served):
    client, _ = served
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata("iris")
    assert metadata["name"] == "iris" and metadata["versions"] == ["3"]
    assert {"name": "input-0", "datatype": "FP64", "shape": [-1, 4]} in metadata["inputs"]
    assert [output["name"] for output in metadata["outputs"]] == ["label", "probabilities"]
    assert client.get_model_metadata("iris", model_version="3") == metadata


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
@pytest.mark.parametrize("binary_inputs", [True, False], ids=["binary inputs", "JSON inputs"])
@pytest.mark.parametrize("binary_outputs", [True, False], ids=["binary outputs", "JSON outputs"])
def test_one_matrix_tensor_gets_scikit_learns_answers(served, datatype, binary_inputs, binary_outputs):
    client, estimator = served
    rows = ROWS.astype(np.float32 if datatype == "FP32" else np.float64)
    tensor = triton.InferInput("input-0", list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows, binary_data=binary_inputs)
    outputs = [
        triton.InferRequestedOutput("label", binary_data=binary_outputs),
        triton.InferRequestedOutput("probabilities", binary_data=binary_outputs),
    ]
    result = client.infer("iris", [tensor], outputs=outputs, request_id="r-7")
    labels, probabilities = expected(estimator, rows)
    assert labels_of(result) == labels
    assert result.as_numpy("probabilities").shape == (len(rows), 3)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=0, atol=1e-9)
    response = result.get_response()
    assert response["id"] == "r-7" and response["model_name"] == "iris"
    for output in response["outputs"]:
        assert ("data" in output) != binary_outputs, output


def test_the_clients_defaults_send_and_take_every_tensor_in_binary(served):
    client, estimator = served
    tensor = triton.InferInput("input-0", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS)
    result = client.infer("iris", [tensor], model_version="3")
    labels, probabilities = expected(estimator, ROWS)
    assert labels_of(result) == labels
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=0, atol=1e-9)
    assert all("data" not in output for output in result.get_response()["outputs"])


@pytest.mark.parametrize("shape", ["[rows]", "[rows, 1]"])
def test_one_tensor_per_feature_in_binary_gets_scikit_learns_answers(served, shape):
    client, estimator = served
    tensors = []
    for column, name in enumerate(IRIS_FEATURES):
        values = ROWS[:, column] if shape == "[rows]" else ROWS[:, column : column + 1]
        tensor = triton.InferInput(name, list(values.shape), "FP64")
        tensor.set_data_from_numpy(np.ascontiguousarray(values), binary_data=column % 2 == 0)
        tensors.append(tensor)
    result = client.infer("iris", tensors, outputs=[triton.InferRequestedOutput("label")])
    assert labels_of(result) == expected(estimator, ROWS)[0]
    assert [output["name"] for output in result.get_response()["outputs"]] == ["label"]


def test_integer_and_boolean_tensors_are_read_in_their_own_datatypes(served):
    client, estimator = served
    rows = np.array([[5, 3, 1, 0], [7, 3, 6, 2]], dtype=np.int32)
    tensor = triton.InferInput("input-0", [2, 4], "INT32")
    tensor.set_data_from_numpy(rows)
    assert labels_of(client.infer("iris", [tensor])) == expected(estimator, rows)[0]


def test_a_bytes_tensor_for_number_features_is_refused_naming_the_input(served):
    client, _ = served
    tensor = triton.InferInput("input-0", [1, 4], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"5.1", b"3.5", b"1.4", b"0.2"]], dtype=np.object_))
    with pytest.raises(InferenceServerException) as refused:
        client.infer("iris", [tensor])
    assert "inputs/0/datatype" in str(refused.value) and "BYTES is for string features" in str(refused.value)
