"""Uploading models fitted on tables: text columns, their values and missing values read from the
model (and checked on sample rows), and what the admin says instead."""

import json

import pytest
import skops.io as sio

from endpoints.demo import NamedBytes
from endpoints.services import ServiceError
from endpoints.services.versions import ml_model_create, model_version_register
from tests.zoo import CENSUS_FEATURES, census, census_pipeline


@pytest.fixture
def census_model(admin):
    return ml_model_create(user=admin, name="census")


def register(admin, ml_model, estimator, **fields):
    data = sio.dumps(estimator)
    return model_version_register(
        user=admin,
        ml_model=ml_model,
        upload=NamedBytes(data, "model.skops"),
        trusted_types=sio.get_untrusted_types(data=data),
        **fields,
    )


def by_name(version) -> dict:
    return {feature["name"]: feature for feature in version.input_schema}


def test_text_columns_their_values_and_missing_values_are_read_from_the_model(admin, census_model):
    version = register(admin, census_model, census_pipeline())

    schema = by_name(version)
    assert [feature["name"] for feature in version.input_schema] == CENSUS_FEATURES
    assert schema["sex"] == {
        "name": "sex",
        "type": "string",
        "categories": ["Female", "Male"],
        "other_values": True,
        "nullable": True,
    }
    assert schema["age"] == {"name": "age", "type": "number", "nullable": True}
    assert version.classes == ["<=50K", ">50K"] and version.label_map == {}
    assert version.onnx_note.startswith("ONNX Runtime serves it (float64), converted when the server starts")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # unscaled numbers: fit noise
def test_an_encoder_that_refuses_unknown_values_gives_a_closed_set(admin, census_model):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame, labels = census(missing=0.0)
    columns = ColumnTransformer(
        [
            ("text", OneHotEncoder(handle_unknown="error"), ["sex", "education"]),
            ("numbers", "passthrough", ["age", "hours_per_week", "capital_gain"]),
        ]
    )
    strict = Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=500))]).fit(frame, labels)

    schema = by_name(register(admin, census_model, strict))

    assert schema["sex"]["other_values"] is False and schema["sex"]["type"] == "string"
    assert "nullable" not in schema["sex"] and "nullable" not in schema["age"]
    assert schema["workclass"]["type"] == "number"  # the model drops it: nothing says it is text


def test_the_admin_can_say_a_feature_may_not_be_missing_or_takes_no_other_values(admin, census_model):
    given = [{"name": name} for name in CENSUS_FEATURES]
    given[0]["nullable"] = False
    given[4].update(other_values=False)

    schema = by_name(register(admin, census_model, census_pipeline(), input_schema=json.dumps(given)))

    assert "nullable" not in schema["age"]
    assert schema["sex"]["other_values"] is False and schema["sex"]["categories"] == ["Female", "Male"]


def test_a_feature_said_to_be_nullable_that_the_model_cannot_take_missing_is_refused(admin, census_model):
    from sklearn.linear_model import LogisticRegression

    frame, labels = census(missing=0.0)
    numbers = frame[["age", "hours_per_week", "capital_gain"]]
    linear = LogisticRegression(max_iter=500).fit(numbers, labels)
    given = [{"name": "age", "nullable": True}, "hours_per_week", "capital_gain"]

    with pytest.raises(ServiceError, match="The model fails when age is missing") as refused:
        register(admin, census_model, linear, input_schema=json.dumps(given))

    assert refused.value.field == "input_schema"
    assert not census_model.versions.exists()


def test_a_schema_entry_with_an_unknown_key_is_refused_by_name(admin, census_model):
    given = [{"name": name} for name in CENSUS_FEATURES]
    given[1]["choices"] = ["a"]

    with pytest.raises(ServiceError, match=r"Schema entry 1 \('workclass'\) has unknown keys \['choices'\]"):
        register(admin, census_model, census_pipeline(), input_schema=json.dumps(given))
