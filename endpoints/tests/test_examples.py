"""Example rows: read from the fitted model per family (scaler means, imputer statistics, encoder
values, tree split midpoints), given by the admin at upload and checked field by field, and made
from the schema for versions that kept none."""

import json

import numpy as np
import pytest
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from endpoints.demo import IRIS_EXAMPLES, IRIS_FEATURES, NamedBytes
from endpoints.examples import ExampleError, model_examples, parse_examples, schema_examples
from endpoints.services import ServiceError
from endpoints.services.versions import ml_model_create, model_version_register
from serving import splits
from serving.config import Feature
from tests.zoo import EDUCATION, MARITAL, SEX, WORKCLASS, census, census_pipeline

IRIS = [Feature(name) for name in IRIS_FEATURES]


@pytest.fixture(scope="module")
def iris():
    data = load_iris()
    return data.data, data.target


def first_row(estimator, features=IRIS) -> dict:
    return model_examples(estimator, features)["rows"][0]


def test_a_scalers_means_are_the_first_row(iris):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(*iris)

    examples = model_examples(model, IRIS)

    means = model[0].mean_
    assert list(examples["rows"][0].values()) == [float(f"{m:.4g}") for m in means]
    assert examples["rows"][0] == {
        "sepal_length": 5.843,
        "sepal_width": 3.057,
        "petal_length": 3.758,
        "petal_width": 1.199,
    }
    # The other rows sit one standard deviation below and above.
    assert examples["rows"][1]["petal_length"] == pytest.approx(means[2] - model[0].scale_[2], rel=1e-3)
    assert examples["rows"][2]["petal_length"] == pytest.approx(means[2] + model[0].scale_[2], rel=1e-3)
    assert examples["origin"] == "model"
    assert examples["note"] == "Read from the model: StandardScaler's mean (4)"


def test_a_min_max_scaler_gives_the_middle_of_the_range(iris):
    model = make_pipeline(MinMaxScaler(), LogisticRegression(max_iter=500)).fit(*iris)

    row = first_row(model)

    assert row["sepal_length"] == pytest.approx((4.3 + 7.9) / 2)
    assert row["petal_width"] == pytest.approx((0.1 + 2.5) / 2)


def test_a_tree_gives_the_middle_of_its_split_thresholds(iris):
    tree = DecisionTreeClassifier(random_state=0).fit(*iris)

    examples = model_examples(tree, IRIS)

    found = splits.thresholds(tree)
    for column, name in enumerate(IRIS_FEATURES):
        if column in found:
            assert examples["rows"][0][name] == float(f"{np.median(found[column]):.4g}")
            assert examples["by_feature"][name] == "the middle of its tree splits"
    # Every value is inside the range the model splits on, not a constant.
    assert len(set(examples["rows"][0].values())) > 1
    assert set(examples["rows"][0].values()) != {1.0}


def test_a_forest_behind_an_imputer_still_gives_its_splits(iris):
    forest = make_pipeline(SimpleImputer(), RandomForestClassifier(n_estimators=5, random_state=0)).fit(*iris)

    examples = model_examples(forest, IRIS)

    # The imputer's means come first (they are where the data is); a column it knows nothing of
    # would take the forest's splits.
    assert examples["rows"][0]["sepal_length"] == pytest.approx(5.843, abs=1e-3)
    assert "SimpleImputer's mean value" in examples["note"]


def test_nearest_neighbours_give_the_median_of_their_points(iris):
    model = KNeighborsClassifier().fit(*iris)

    row = first_row(model)

    assert row == {name: float(f"{np.median(iris[0][:, i]):.4g}") for i, name in enumerate(IRIS_FEATURES)}


def test_a_census_pipeline_gives_imputed_numbers_and_the_most_frequent_text():
    model = census_pipeline()
    frame, _ = census()
    features = [
        Feature("age", nullable=True),
        Feature("workclass", "string", tuple(sorted(WORKCLASS)), True, True),
        Feature("education", "string", tuple(sorted(EDUCATION)), True, False),
        Feature("marital_status", "string", tuple(sorted(MARITAL)), True, False),
        Feature("sex", "string", tuple(sorted(SEX)), True, False),
        Feature("hours_per_week", nullable=True),
        Feature("capital_gain"),
    ]

    examples = model_examples(model, features)

    row = examples["rows"][0]
    assert row["age"] == pytest.approx(frame["age"].mean(), abs=0.05)
    assert row["hours_per_week"] == pytest.approx(frame["hours_per_week"].mean(), abs=0.05)
    assert row["workclass"] == "Private"  # the imputer's most frequent value
    assert row["sex"] in SEX
    assert examples["by_feature"]["workclass"] == "SimpleImputer's most frequent value"
    assert examples["by_feature"]["age"] == "SimpleImputer's mean value"
    # The scaler after the imputer gives the other rows their spread: a standard deviation off.
    scaler = model[0].named_transformers_["numbers"][-1]
    assert examples["rows"][1]["age"] == pytest.approx(frame["age"].mean() - scaler.scale_[0], abs=0.05)
    assert examples["rows"][2]["age"] == pytest.approx(frame["age"].mean() + scaler.scale_[0], abs=0.05)


def test_an_encoder_alone_gives_its_first_known_value_then_the_next():
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    frame, labels = census()
    frame = frame[["education", "sex"]]
    model = make_pipeline(
        ColumnTransformer([("text", OneHotEncoder(handle_unknown="ignore"), ["education", "sex"])]),
        LogisticRegression(max_iter=500),
    ).fit(frame, labels)
    features = [
        Feature("education", "string", tuple(sorted(EDUCATION))),
        Feature("sex", "string", tuple(sorted(SEX))),
    ]

    rows = model_examples(model, features)["rows"]

    encoder = model[0].named_transformers_["text"]
    assert [row["education"] for row in rows] == list(encoder.categories_[0][:3])
    assert [row["sex"] for row in rows] == ["Female", "Male", "Female"]
    assert model_examples(model, features)["by_feature"]["sex"] == "OneHotEncoder's known values"


def test_a_model_that_says_nothing_of_its_inputs_gets_zeros_and_says_so(iris):
    model = LogisticRegression(max_iter=500).fit(*iris)

    examples = model_examples(model, IRIS)

    assert examples["rows"][0] == dict.fromkeys(IRIS_FEATURES, 0.0)
    assert examples["note"] == "Read from the model: no hint, set to 0 (4)"


def test_integer_and_boolean_features_get_values_of_their_type(iris):
    X = np.column_stack([np.round(iris[0][:, 0] * 10), (iris[0][:, 1] > 3).astype(float)])
    tree = DecisionTreeClassifier(random_state=0).fit(X, iris[1])

    row = first_row(tree, [Feature("length_mm", "integer"), Feature("wide", "boolean")])

    assert isinstance(row["length_mm"], int)
    assert isinstance(row["wide"], bool)


def test_schema_examples_use_known_values_in_turn_and_never_all_ones():
    schema = [
        {"name": "colour", "type": "string", "categories": ["blue", "green", "red"], "other_values": False},
        {"name": "size", "type": "number"},
        {"name": "count", "type": "integer", "nullable": True},
        {"name": "ok", "type": "boolean"},
    ]

    examples = schema_examples(schema)

    assert [row["colour"] for row in examples["rows"]] == ["blue", "green", "red"]
    assert examples["rows"][0] == {"colour": "blue", "size": 0.0, "count": 0, "ok": False}
    assert examples["origin"] == "schema"
    assert examples["note"] == "From the schema: the schema's known values (1); no hint, set to 0 (3)"


def test_a_given_example_is_checked_as_a_request_naming_every_wrong_field():
    features = [
        Feature("age", "integer"),
        Feature("sex", "string", ("Female", "Male"), other_values=False),
        Feature("hours", nullable=True),
    ]

    assert parse_examples({"age": 39, "sex": "Male"}, features) == [{"age": 39, "sex": "Male", "hours": None}]
    with pytest.raises(ExampleError) as caught:
        parse_examples({"age": 39.5, "sex": "Other", "colour": "red"}, features)
    message = str(caught.value)
    assert message.startswith("The example: ")
    assert "age: expected an integer" in message
    assert "sex: unknown value 'Other': the model knows 'Female', 'Male'" in message
    assert "colour: unexpected field" in message
    with pytest.raises(ExampleError, match=r"Example row 2: sex: expected a value"):
        parse_examples([{"age": 1, "sex": "Male"}, {"age": 2, "sex": None}], features)
    with pytest.raises(ExampleError, match="JSON object of named features"):
        parse_examples([[1, "Male", 2.0]], features)
    with pytest.raises(ExampleError, match="at most 5"):
        parse_examples([{"age": 1, "sex": "Male"}] * 6, features)


# Through the upload, in the sandbox ---------------------------------------------------------------


@pytest.fixture
def iris_model(admin):
    return ml_model_create(user=admin, name="iris")


def upload(admin, ml_model, estimator, **fields):
    data = sio.dumps(estimator)
    return model_version_register(
        user=admin,
        ml_model=ml_model,
        upload=NamedBytes(data, "model.skops"),
        trusted_types=sio.get_untrusted_types(data=data),
        **fields,
    )


def iris_frame():
    frame = load_iris(as_frame=True).frame
    features = frame.iloc[:, :4]
    features.columns = IRIS_FEATURES
    return features, frame["target"]


def test_an_upload_keeps_the_examples_read_from_the_model_in_the_sandbox(admin, iris_model):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(*iris_frame())

    version = upload(admin, iris_model, model)

    assert version.examples["origin"] == "model"
    assert version.examples["rows"][0]["sepal_length"] == 5.843
    assert len(version.examples["rows"]) == 3


def test_an_upload_keeps_the_example_the_admin_gave(admin, iris_model):
    model = LogisticRegression(max_iter=500).fit(*iris_frame())

    version = upload(admin, iris_model, model, example=json.dumps(IRIS_EXAMPLES))

    assert version.examples["rows"] == IRIS_EXAMPLES
    assert version.examples["note"] == "Given at upload (3 rows)"


def test_an_upload_with_a_wrong_example_is_refused_naming_the_field(admin, iris_model):
    model = LogisticRegression(max_iter=500).fit(*iris_frame())

    with pytest.raises(ServiceError) as caught:
        upload(admin, iris_model, model, example='{"sepal_length": "long", "petal_width": 0.2}')

    assert caught.value.field == "example"
    assert "sepal_length: expected a number" in caught.value.message
    assert "sepal_width: missing" in caught.value.message
    assert not iris_model.versions.exists()


def test_a_version_without_examples_reads_them_from_its_schema(admin, iris_model):
    model = LogisticRegression(max_iter=500).fit(*iris_frame())
    version = upload(admin, iris_model, model)
    version.examples = {}
    version.save()
    version.refresh_from_db()

    assert version.example_set["origin"] == "schema"
    assert version.example_set["rows"][0] == dict.fromkeys(IRIS_FEATURES, 0.0)


def test_the_api_takes_an_example_and_answers_the_examples(admin, iris_model, iris_bytes):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(admin)
    url = f"/api/v1/models/{iris_model.pk}/versions/"

    bad = client.post(
        url,
        {"artifact": NamedBytes(iris_bytes, "iris.skops"), "example": '{"sepal_length": true}'},
        format="multipart",
    )
    good = client.post(
        url,
        {"artifact": NamedBytes(iris_bytes, "iris.skops"), "example": json.dumps(IRIS_EXAMPLES[0])},
        format="multipart",
    )

    assert bad.status_code == 422, bad.content  # the upload is well formed; its example is not
    assert "example" in json.dumps(bad.json())
    assert "sepal_length: expected a number, not a boolean" in json.dumps(bad.json())
    assert good.status_code == 201, good.content
    assert good.json()["examples"]["rows"] == [IRIS_EXAMPLES[0]]
    assert good.json()["examples"]["origin"] == "given"


def test_versions_registered_before_examples_get_them_read_from_their_artifact(admin, iris_model):
    from io import StringIO

    from django.core.management import call_command

    model = make_pipeline(StandardScaler(), DecisionTreeClassifier(random_state=0)).fit(*iris_frame())
    old = upload(admin, iris_model, model)
    old.examples = {}
    old.save()
    given = upload(admin, iris_model, model, example=json.dumps(IRIS_EXAMPLES[0]))
    out = StringIO()

    call_command("version_examples", stdout=out)

    old.refresh_from_db()
    given.refresh_from_db()
    assert old.examples["origin"] == "model"
    assert old.examples["rows"][0]["sepal_length"] == 5.843  # the scaler's mean, not 0
    assert out.getvalue() == "iris v1: Read from the model: StandardScaler's mean (4).\n"
    assert given.examples["origin"] == "given"  # kept: it had examples
