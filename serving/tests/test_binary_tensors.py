"""The binary tensor data extension on the wire: framing, datatypes, mistakes (400s naming the input)."""

from __future__ import annotations

import struct

import httpx
import numpy as np
import orjson
import pytest

from serving.binary_tensors import decode_bytes, encode, encode_bytes
from serving.tests.support import SETOSA, VIRGINICA, Server, stop_all
from serving.validation import RequestError

ROWS = np.array([list(SETOSA.values()), list(VIRGINICA.values())])
URL = "/v2/models/iris/infer"


@pytest.fixture(scope="module")
def client(iris_env, tmp_path_factory):
    server = Server(iris_env, tmp_path_factory.mktemp("binary") / "server.log")
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yield client
    finally:
        stop_all([server])


def binary_request(document: dict, *tensors: bytes, header_length: int | None = None, **headers):
    header = orjson.dumps(document)
    length = len(header) if header_length is None else header_length
    headers = {"Inference-Header-Content-Length": str(length), **headers}
    return {"content": header + b"".join(tensors), "headers": headers}


def matrix(data: bytes, datatype: str = "FP64", shape=(2, 4), **parameters) -> dict:
    return {
        "name": "input-0",
        "shape": list(shape),
        "datatype": datatype,
        "parameters": {"binary_data_size": len(data), **parameters},
    }


def split(response: httpx.Response) -> tuple[dict, bytes]:
    length = int(response.headers["inference-header-content-length"])
    return orjson.loads(response.content[:length]), response.content[length:]


@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [("FP64", "<f8"), ("FP32", "<f4"), ("FP16", "<f2"), ("INT64", "<i8"), ("UINT8", "u1")],
)
def test_binary_inputs_in_each_datatype_get_the_answers_json_inputs_get(client, datatype, dtype):
    values = ROWS.round() if dtype[-2] in "iu" else ROWS
    data = values.astype(dtype).tobytes()
    binary = client.post(URL, **binary_request({"inputs": [matrix(data, datatype)]}, data))
    assert binary.status_code == 200, binary.text
    assert binary.headers["content-type"] == "application/json"  # no output asked for in binary
    tensor = {
        "name": "x",
        "shape": [2, 4],
        "datatype": datatype,
        "data": values.astype(dtype).ravel().tolist(),
    }
    assert binary.json()["outputs"] == client.post(URL, json={"inputs": [tensor]}).json()["outputs"]


def test_outputs_asked_for_in_binary_follow_the_json_part(client):
    data = ROWS.tobytes()
    document = {
        "id": "b1",
        "inputs": [matrix(data)],
        "outputs": [{"name": "label", "parameters": {"binary_data": True}}, {"name": "probabilities"}],
    }
    response = client.post(URL, **binary_request(document, data))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    header, tail = split(response)
    label, probabilities = header["outputs"]
    assert header["id"] == "b1" and "data" not in label and len(probabilities["data"]) == 6
    assert label == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [2],
        "parameters": {"binary_data_size": len(tail)},
    }
    assert tail == struct.pack("<I", 6) + b"setosa" + struct.pack("<I", 9) + b"virginica"
    # binary_data_output makes every output binary, unless an output says otherwise
    document = {"inputs": [matrix(data)], "parameters": {"binary_data_output": True}}
    document["outputs"] = [{"name": "probabilities"}, {"name": "label", "parameters": {"binary_data": False}}]
    header, tail = split(client.post(URL, **binary_request(document, data)))
    assert header["outputs"][1]["data"] == ["setosa", "virginica"]
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 48}
    np.testing.assert_allclose(np.frombuffer(tail, "<f8").reshape(2, 3).sum(axis=1), [1.0, 1.0])


def test_json_inputs_may_ask_for_binary_outputs_and_feature_tensors_may_mix(client):
    inputs = [
        {"name": name, "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}
        if index % 2
        else {"name": name, "shape": [2], "datatype": "FP64", "data": ROWS[:, index].tolist()}
        for index, name in enumerate(SETOSA)
    ]
    tensors = [ROWS[:, index].astype("<f4").tobytes() for index in (1, 3)]
    document = {"inputs": inputs, "outputs": [{"name": "label", "parameters": {"binary_data": True}}]}
    header, tail = split(client.post(URL, **binary_request(document, *tensors)))
    assert [output["name"] for output in header["outputs"]] == ["label"]
    assert tail.endswith(b"setosa" + struct.pack("<I", 9) + b"virginica")


@pytest.mark.parametrize(
    ("document", "tail", "header_length", "field", "words"),
    [
        (
            {"inputs": [matrix(b"\0" * 64)]},
            b"\0" * 60,
            None,
            "inputs/0/parameters/binary_data_size",
            "only 60",
        ),
        (
            {"inputs": [matrix(b"\0" * 60)]},
            b"\0" * 60,
            None,
            "inputs/0/parameters/binary_data_size",
            "takes 64",
        ),
        ({"inputs": [matrix(b"\0" * 64)]}, b"\0" * 65, None, None, "add up to 64"),
        ({"inputs": [matrix(b"\0" * 8, "BF16")]}, b"\0" * 8, None, "inputs/0/datatype", "one of"),
        ({"inputs": [matrix(b"\2" * 8, "BOOL")]}, b"\2" * 8, None, "inputs/0/data", "0 or 1"),
        ({"inputs": [matrix(b"\0" * 64, shape=(2, -4))]}, b"\0" * 64, None, "inputs/0/shape", "non-negative"),
        ({"inputs": [{**matrix(b"\0" * 64), "data": [1]}]}, b"\0" * 64, None, "inputs/0/data", "not both"),
        ({"inputs": [matrix(b"\0" * 64)]}, b"\0" * 64, 10_000, None, "at most the body"),
        ({"inputs": [matrix(b"\0" * 64)]}, b"\0" * 64, 0, None, "at least one byte"),
    ],
)
def test_framing_mistakes_are_400s_that_name_the_input(client, document, tail, header_length, field, words):
    response = client.post(URL, **binary_request(document, tail, header_length=header_length))
    assert response.status_code == 400, response.text
    answer = response.json()
    assert words in answer["error"], answer
    if field:
        assert "'input-0' (inputs/0)" in answer["error"] and field in answer["fields"], answer


def test_truncated_bytes_and_bytes_for_number_features_are_refused(client):
    elements = encode_bytes(["5.1", "3.5", "1.4", "0.2"])
    truncated = elements[:-2]
    document = {"inputs": [matrix(truncated, "BYTES", shape=(1, 4))]}
    response = client.post(URL, **binary_request(document, truncated))
    assert response.status_code == 400 and "BYTES element 3" in response.json()["error"], response.text
    document = {"inputs": [matrix(elements, "BYTES", shape=(1, 4))]}
    response = client.post(URL, **binary_request(document, elements))
    assert response.status_code == 422, response.text
    assert response.json()["fields"] == {
        "inputs/0/datatype": "BYTES is for string features; "
        "sepal_length, sepal_width, petal_length, petal_width take numbers or booleans"
    }


def test_binary_sizes_need_the_header_and_the_header_needs_a_binary_content_type(client):
    data = ROWS.tobytes()
    no_header = orjson.dumps({"inputs": [matrix(data)]})
    response = client.post(URL, content=no_header, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "Inference-Header-Content-Length" in response.json()["error"]
    request = binary_request({"inputs": [matrix(data)]}, data, **{"content-type": "text/plain"})
    assert client.post(URL, **request).status_code == 415
    request = binary_request({"inputs": [matrix(data)]}, data, **{"Inference-Header-Content-Length": "x"})
    assert client.post(URL, **request).status_code == 400


def test_bytes_elements_round_trip_and_numbers_are_little_endian():
    values = ["setosa", "", "ünïcode", "x" * 300]
    encoded = encode_bytes(values)
    assert encoded[:14] == struct.pack("<I", 6) + b"setosa" + struct.pack("<I", 0)
    tensor = {"name": "t", "shape": [4]}
    assert decode_bytes(memoryview(encoded), 4, tensor, 0) == [value.encode() for value in values]
    with pytest.raises(RequestError, match="take 10"):
        decode_bytes(memoryview(encoded[:4] + b"\0" * 8), 1, tensor, 0)
    assert encode([1, -2], "INT64") == np.array([1, -2], "<i8").tobytes()
    assert encode([0.5, 2.0], "FP64") == np.array([0.5, 2.0], "<f8").tobytes()


def test_405_answers_say_which_methods_are_allowed(client):
    assert client.get(URL).headers["allow"] == "POST"
    assert client.delete("/v2/models/iris").headers["allow"] == "GET, HEAD"
    assert client.put("/predict").status_code == 405


def test_an_invalid_return_in_the_query_is_refused_even_when_the_body_has_a_valid_one(client):
    body = {"inputs": [list(SETOSA.values())], "return": "label"}
    response = client.post("/predict", params={"return": "everything"}, json=body)
    assert response.status_code == 422 and "return" in response.json()["fields"]
    answer = client.post("/predict", params={"return": "probabilities"}, json=body).json()
    assert answer == {"predictions": ["setosa"]}  # both valid: the body's wins
