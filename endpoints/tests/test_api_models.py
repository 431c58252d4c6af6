"""The models API: create models, upload versions, read a version's facts."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from endpoints.demo import IRIS_LABELS
from endpoints.models import AuditEvent, MLModel, ModelVersion


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def iris_model(admin):
    from endpoints.services.versions import ml_model_create

    return ml_model_create(user=admin, name="iris")


def upload(client, ml_model, data: bytes, filename: str = "iris.skops", **fields):
    return client.post(
        f"/api/v1/models/{ml_model.pk}/versions/",
        {"artifact": SimpleUploadedFile(filename, data), **fields},
        format="multipart",
    )


def test_an_admin_creates_a_model(admin):
    response = api(admin).post(
        "/api/v1/models/", {"name": "churn", "description": "Who leaves"}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    ml_model = MLModel.objects.get(name="churn")
    assert body["id"] == ml_model.pk
    assert body["owner"] == "ada"
    assert body["latest_version"] is None
    assert response["Location"] == f"http://testserver/api/v1/models/{ml_model.pk}/"
    assert ml_model.description == "Who leaves"
    assert AuditEvent.objects.filter(action="model.create").count() == 1


def test_everyone_signed_in_lists_models_by_name(admin, member, iris_version):
    from endpoints.services.versions import ml_model_create

    ml_model_create(user=admin, name="churn")
    rows = api(member).get("/api/v1/models/").json()["results"]
    assert [(row["name"], row["latest_version"]) for row in rows] == [("churn", None), ("iris", 1)]


def test_a_model_name_that_is_taken_is_refused(admin, iris_model):
    response = api(admin).post("/api/v1/models/", {"name": "iris"}, format="json")
    assert response.status_code == 409
    assert response.json()["field"] == "name"
    assert response.json()["detail"] == "A model named 'iris' already exists."
    assert MLModel.objects.count() == 1


def test_a_team_member_cannot_create_a_model(member):
    response = api(member).post("/api/v1/models/", {"name": "churn"}, format="json")
    assert response.status_code == 403
    assert not MLModel.objects.exists()


def test_an_admin_uploads_a_version_and_its_schema_is_read_from_the_model(admin, iris_model, iris_bytes):
    response = upload(
        api(admin),
        iris_model,
        iris_bytes,
        label_map=json.dumps(IRIS_LABELS),
        metrics=json.dumps({"accuracy": 0.97}),
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    version = ModelVersion.objects.get(model=iris_model)
    assert body["id"] == version.pk
    assert response["Location"] == f"http://testserver/api/v1/versions/{version.pk}/"
    assert body["number"] == 1
    assert body["format"] == "skops"
    assert [feature["name"] for feature in body["input_schema"]] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert body["classes"] == [0, 1, 2]
    assert body["label_map"] == IRIS_LABELS
    assert body["metrics"] == {"accuracy": 0.97}
    assert body["sha256"] == version.sha256 and len(body["sha256"]) == 64
    assert body["size_bytes"] == len(iris_bytes)
    assert body["estimator"] == version.estimator
    assert body["sklearn_version"]
    assert body["runs_code_when_loaded"] is False
    assert version.created_by == admin
    assert AuditEvent.objects.filter(action="model_version.register", target_id=str(version.pk)).exists()


def test_a_version_can_be_read_by_id(member, iris_version):
    response = api(member).get(f"/api/v1/versions/{iris_version.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert (body["model_name"], body["number"], body["sha256"]) == ("iris", 1, iris_version.sha256)
    assert body["label_map"] == IRIS_LABELS
    assert "created_at" in body


def test_a_models_versions_list_newest_first(admin, iris_version, iris_bytes):
    second = upload(api(admin), iris_version.model, iris_bytes)
    assert second.status_code == 201
    response = api(admin).get(f"/api/v1/models/{iris_version.model_id}/versions/")
    assert [row["number"] for row in response.json()["results"]] == [2, 1]
    assert api(admin).get(f"/api/v1/models/{iris_version.model_id}/").json()["latest_version"] == 2


def test_uploading_a_file_that_is_not_a_model_names_the_field(admin, iris_model):
    response = upload(api(admin), iris_model, b"this is not a model", filename="notes.skops")
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "artifact"
    assert body["detail"] == "This is not a skops file (it is not a zip archive)."
    assert not ModelVersion.objects.exists()


def test_uploading_an_unsupported_file_type_names_the_field(admin, iris_model):
    response = upload(api(admin), iris_model, b"a,b\n1,2\n", filename="data.csv")
    assert response.status_code == 422
    assert response.json()["field"] == "artifact"
    assert response.json()["detail"].startswith("Unsupported file type '.csv'")


def test_uploading_without_a_file_names_the_field(admin, iris_model):
    response = api(admin).post(f"/api/v1/models/{iris_model.pk}/versions/", {}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Choose a model file to upload.",
        "field": "artifact",
        "code": "invalid",
    }


def test_a_label_map_that_is_not_json_names_the_field(admin, iris_model, iris_bytes):
    response = upload(api(admin), iris_model, iris_bytes, label_map="{0: setosa")
    assert response.status_code == 422
    assert response.json()["field"] == "label_map"
    assert response.json()["detail"].startswith("This is not valid JSON")
    assert not ModelVersion.objects.exists()


def test_a_pickle_is_refused_unless_the_admin_trusts_its_code(admin, iris_model):
    response = upload(api(admin), iris_model, b"\x80\x04N.", filename="model.joblib", trust_code="false")
    assert response.status_code == 422
    assert response.json()["field"] == "artifact"
    assert response.json()["detail"].startswith("A joblib file runs code when it is loaded.")
    assert not ModelVersion.objects.exists()


def test_a_team_member_cannot_upload_a_version(member, iris_model, iris_bytes):
    response = upload(api(member), iris_model, iris_bytes)
    assert response.status_code == 403
    assert not ModelVersion.objects.exists()


def test_uploading_to_a_model_that_does_not_exist_answers_404(admin, iris_bytes):
    response = api(admin).post(
        "/api/v1/models/999/versions/",
        {"artifact": SimpleUploadedFile("iris.skops", iris_bytes)},
        format="multipart",
    )
    assert response.status_code == 404
