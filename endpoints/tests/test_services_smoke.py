import pytest

from endpoints.models import Deployment, DeploymentStatus
from endpoints.services import ServiceError
from endpoints.services.deployments import deployment_request


def test_registering_iris_extracts_its_schema_and_classes(iris_version):
    assert iris_version.feature_names == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert iris_version.classes == [0, 1, 2]
    assert iris_version.label_for(0) == "setosa"


def test_a_second_deploy_while_one_is_queued_is_refused(admin, endpoint, iris_version, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        pass
    deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    with pytest.raises(ServiceError, match="already has a deployment in progress"):
        deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    assert Deployment.objects.filter(status=DeploymentStatus.QUEUED).count() == 1
