"""Models and versions: create a model, upload versions (safely), read what was extracted."""

import io

import joblib
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from endpoints.demo import IRIS_FEATURES
from endpoints.models import AuditEvent, MLModel, ModelVersion
from endpoints.services.versions import ml_model_create


@pytest.fixture
def ml_model(admin):
    return ml_model_create(user=admin, name="iris")


@pytest.fixture(scope="module")
def iris_joblib_bytes() -> bytes:
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    features, target = load_iris(return_X_y=True)
    buffer = io.BytesIO()
    joblib.dump(DecisionTreeClassifier(max_depth=2).fit(features, target), buffer)
    return buffer.getvalue()


def upload_url(ml_model) -> str:
    return reverse("endpoints:version-create", args=[ml_model.name])


def test_an_admin_creates_a_model_and_is_taken_to_its_upload_page(client, admin):
    client.force_login(admin)
    response = client.post(reverse("endpoints:model-create"), {"name": "churn", "description": "Who leaves"})
    assert response["Location"] == reverse("endpoints:version-create", args=["churn"])
    assert MLModel.objects.get(name="churn").owner == admin


def test_a_taken_model_name_is_refused_on_the_name_field(client, admin, ml_model):
    client.force_login(admin)
    response = client.post(reverse("endpoints:model-create"), {"name": "iris"})
    assert response.status_code == 400
    assert "already exists" in response.context["form"].errors["name"][0]


@pytest.mark.parametrize("name", ["fraud/v2", ".."])
def test_a_model_name_that_cannot_be_in_a_url_is_refused_on_the_name_field(client, admin, name):
    client.force_login(admin)
    response = client.post(reverse("endpoints:model-create"), {"name": name})
    assert "cannot contain '/'" in response.context["form"].errors["name"][0]
    assert not MLModel.objects.exists()


def test_uploading_a_skops_file_shows_the_extracted_schema_classes_and_labels(
    client, admin, ml_model, iris_bytes
):
    client.force_login(admin)
    response = client.post(
        upload_url(ml_model),
        {
            "artifact": SimpleUploadedFile("iris.skops", iris_bytes),
            "label_map": '{"0": "setosa", "1": "versicolor", "2": "virginica"}',
            "metrics": '{"accuracy": 0.97}',
        },
    )
    version = ModelVersion.objects.get()
    assert response["Location"] == reverse("endpoints:version-detail", args=["iris", 1])
    assert version.feature_names == IRIS_FEATURES and version.metrics == {"accuracy": 0.97}
    page = client.get(response["Location"]).content.decode()
    for feature in IRIS_FEATURES:
        assert f"<code>{feature}</code>" in page
    assert "virginica" in page
    assert version.sha256 in page
    assert "sklearn.linear_model._logistic.LogisticRegression" in page
    assert version.sklearn_version in page


def test_uploading_a_pickle_without_trust_is_refused_with_a_message(
    client, admin, ml_model, iris_joblib_bytes
):
    client.force_login(admin)
    response = client.post(
        upload_url(ml_model), {"artifact": SimpleUploadedFile("tree.joblib", iris_joblib_bytes)}
    )
    assert response.status_code == 400
    [message] = response.context["form"].errors["artifact"]
    assert "runs code when it is loaded" in message
    assert message in response.content.decode().replace("&quot;", '"')
    assert not ModelVersion.objects.exists()
    assert not AuditEvent.objects.filter(action="model_version.register").exists()


def test_a_trusted_pickle_is_accepted_and_marked_as_running_code(client, admin, ml_model, iris_joblib_bytes):
    client.force_login(admin)
    response = client.post(
        upload_url(ml_model),
        {
            "artifact": SimpleUploadedFile("tree.joblib", iris_joblib_bytes),
            "input_schema": '["a", "b", "c", "d"]',
            "trust_code": "on",
        },
    )
    assert response.status_code == 302
    version = ModelVersion.objects.get()
    assert version.format == "joblib" and version.feature_names == ["a", "b", "c", "d"]
    assert "runs code" in client.get(response["Location"]).content.decode()


def test_the_upload_page_explains_why_pickles_need_trust(client, admin, ml_model):
    client.force_login(admin)
    page = client.get(upload_url(ml_model)).content.decode()
    assert "run code when they are loaded" in page
    assert "I trust this file, it runs code when loaded" in page


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("label_map", "{not json", "This is not valid JSON"),
        ("label_map", '{"7": "seven"}', "classes the model does not have"),
        ("input_schema", '["only", "three", "names"]', "The schema names 3 features but the model takes 4."),
        ("input_schema", '["a", "b", "c", "d"]', "does not match the model's feature names"),
        ("metrics", "[1, 2]", "Metrics must be a JSON object."),
    ],
)
def test_bad_upload_details_are_refused_on_their_field(
    client, admin, ml_model, iris_bytes, field, value, message
):
    client.force_login(admin)
    response = client.post(
        upload_url(ml_model), {"artifact": SimpleUploadedFile("iris.skops", iris_bytes), field: value}
    )
    assert response.status_code == 400
    assert message in response.context["form"].errors[field][0]
    assert not ModelVersion.objects.exists()


def test_an_upload_with_no_file_asks_for_one(client, admin, ml_model):
    client.force_login(admin)
    response = client.post(upload_url(ml_model), {})
    assert response.context["form"].errors["artifact"] == ["Choose a model file to upload."]


def test_a_file_that_is_not_a_model_is_refused(client, admin, ml_model):
    client.force_login(admin)
    response = client.post(upload_url(ml_model), {"artifact": SimpleUploadedFile("x.skops", b"hello")})
    assert "not a skops file" in response.context["form"].errors["artifact"][0]


def test_a_team_member_sees_models_but_cannot_create_or_upload(client, member, iris_version, iris_bytes):
    client.force_login(member)
    assert "iris" in client.get(reverse("endpoints:model-list")).content.decode()
    assert client.get(reverse("endpoints:model-detail", args=["iris"])).status_code == 200
    assert client.get(reverse("endpoints:version-detail", args=["iris", 1])).status_code == 200
    assert client.get(reverse("endpoints:model-create")).status_code == 403
    assert client.post(reverse("endpoints:model-create"), {"name": "mine"}).status_code == 403
    response = client.post(
        upload_url(iris_version.model), {"artifact": SimpleUploadedFile("iris.skops", iris_bytes)}
    )
    assert response.status_code == 403
    assert MLModel.objects.count() == 1 and ModelVersion.objects.count() == 1


def test_the_model_page_lists_its_versions_newest_first(client, admin, iris_version, iris_bytes):
    from endpoints.demo import NamedBytes
    from endpoints.services.versions import model_version_register

    model_version_register(
        user=admin, ml_model=iris_version.model, upload=NamedBytes(iris_bytes, "iris.skops")
    )
    client.force_login(admin)
    page = client.get(reverse("endpoints:model-detail", args=["iris"])).content.decode()
    assert page.index(">v2<") < page.index(">v1<")
