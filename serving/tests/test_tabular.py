"""Models fitted on tables: text features, missing values and text labels, served exactly."""

from __future__ import annotations

import httpx
import pytest

from serving.tests.support import Server, stop_all, write_model
from tests.zoo import CENSUS_FEATURES, census_pipeline, census_schema, frame_of, held_out_rows


@pytest.fixture(scope="module")
def census_model():
    return census_pipeline()


@pytest.fixture(scope="module")
def servers(census_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tabular")
    open_env = write_model(folder, "census", census_model, CENSUS_FEATURES, schema=census_schema())
    closed_env = write_model(
        folder, "census-closed", census_model, CENSUS_FEATURES, schema=census_schema(other_values=False)
    )
    started = {
        "open": Server(open_env, folder / "open.log"),
        "closed": Server(closed_env, folder / "closed.log"),
    }
    for server in started.values():
        server.wait_ready(60)
    yield started
    stop_all(started.values())


def test_every_held_out_row_gets_scikit_learns_label_and_probabilities(servers, census_model):
    rows = held_out_rows()
    expected_labels = census_model.predict(frame_of(rows)).tolist()
    expected_proba = census_model.predict_proba(frame_of(rows))

    for index, row in enumerate(rows):
        answer = httpx.post(f"{servers['open'].url}/predict", json=row, timeout=10)
        assert answer.status_code == 200, (row, answer.text)
        body = answer.json()
        assert body["target"] == expected_labels[index]
        assert [body["<=50K_probability"], body[">50K_probability"]] == pytest.approx(
            expected_proba[index].tolist(), abs=1e-12
        )

    batch = httpx.post(
        f"{servers['open'].url}/predict",
        json={"inputs": [[row[name] for name in CENSUS_FEATURES] for row in rows], "return": "both"},
        timeout=10,
    ).json()
    assert batch["predictions"] == expected_labels
    instances = httpx.post(f"{servers['open'].url}/predict", json={"instances": rows}, timeout=10).json()
    assert instances["predictions"] == expected_labels


def test_text_labels_need_no_label_map(servers):
    described = httpx.get(f"{servers['open'].url}/v1/model", timeout=10).json()
    assert described["task"] == "classification"
    workclass = described["schema"][1]
    assert workclass["type"] == "string" and "Private" in workclass["categories"] and workclass["nullable"]


def test_wrong_values_are_named_field_by_field(servers):
    row = held_out_rows()[0]
    wrong = {**row, "workclass": 3, "age": "forty"}
    answer = httpx.post(f"{servers['open'].url}/predict", json=wrong, timeout=10)
    assert answer.status_code == 422
    assert answer.json()["fields"] == {"workclass": "expected a string", "age": "expected a number"}

    unknown = {**row, "workclass": "Never-worked"}
    assert httpx.post(f"{servers['open'].url}/predict", json=unknown, timeout=10).status_code == 200
    refused = httpx.post(f"{servers['closed'].url}/predict", json=unknown, timeout=10)
    assert refused.status_code == 422
    message = refused.json()["fields"]["workclass"]
    assert message.startswith("unknown value 'Never-worked': the model knows 'Federal-gov', 'Local-gov'")


def test_missing_values_are_taken_where_nullable_left_out_or_null(servers, census_model):
    row = held_out_rows()[0]
    left_out = {name: value for name, value in row.items() if name != "hours_per_week"}
    nulls = {**row, "hours_per_week": None, "workclass": None}
    expected = census_model.predict(frame_of([left_out, nulls])).tolist()

    for body, label in zip((left_out, nulls), expected, strict=True):
        answer = httpx.post(f"{servers['open'].url}/predict", json=body, timeout=10)
        assert answer.status_code == 200 and answer.json()["target"] == label


def test_the_openapi_document_lists_the_values_and_nullable_features(servers):
    document = httpx.get(f"{servers['closed'].url}/openapi.json", timeout=10).json()
    properties = document["components"]["schemas"]["NamedFeatures"]["properties"]
    assert properties["sex"] == {"type": "string", "enum": ["Female", "Male"], "nullable": True}
    assert properties["age"] == {"type": "number", "nullable": True}


def test_the_open_inference_protocol_takes_text_as_bytes_tensors(servers, census_model):
    rows = held_out_rows()[:5]
    metadata = httpx.get(f"{servers['open'].url}/v2/models/census", timeout=10).json()
    kinds = {tensor["name"]: tensor["datatype"] for tensor in metadata["inputs"]}
    assert kinds["workclass"] == "BYTES" and kinds["age"] == "FP64" and "input-0" not in kinds
    inputs = [
        {"name": name, "datatype": kinds[name], "shape": [len(rows)], "data": [row[name] for row in rows]}
        for name in CENSUS_FEATURES
    ]
    answer = httpx.post(f"{servers['open'].url}/v2/models/census/infer", json={"inputs": inputs}, timeout=10)
    assert answer.status_code == 200, answer.text
    labels = next(output for output in answer.json()["outputs"] if output["name"] == "label")
    assert labels["data"] == census_model.predict(frame_of(rows)).tolist()

    inputs[1]["data"][0] = 7  # a number where text is expected
    refused = httpx.post(f"{servers['open'].url}/v2/models/census/infer", json={"inputs": inputs}, timeout=10)
    assert refused.status_code == 422 and refused.json()["fields"] == {"inputs/1/data/0": "expected a string"}
