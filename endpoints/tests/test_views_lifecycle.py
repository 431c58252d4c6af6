"""Stopping, starting and deleting an endpoint from the dashboard."""

import pytest

from endpoints.models import Deployment, DeploymentStatus, Endpoint
from endpoints.services.deployments import deployment_request
from endpoints.services.operations import deployment_run


@pytest.fixture
def live(admin, endpoint, iris_version, memory_runtime):
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deployment_run(deployment_id=deployment.pk)
    return deployment


def test_an_admin_stops_and_starts_an_endpoint_from_its_page(client, admin, endpoint, live):
    client.force_login(admin)
    page = client.get("/endpoints/iris-prod/").content.decode()
    assert 'action="/endpoints/iris-prod/stop/"' in page and "Delete endpoint…" in page

    response = client.post("/endpoints/iris-prod/stop/")
    stop = Deployment.objects.get(action="stop")
    assert response.status_code == 302 and response["Location"] == f"/deployments/{stop.pk}/"
    progress = client.get(response["Location"]).content.decode()
    assert f"Stop #{stop.pk}" in progress and "Waiting for a worker" in progress
    deployment_run(deployment_id=stop.pk)
    assert "is stopped." in client.get(f"/deployments/{stop.pk}/").content.decode()

    page = client.get("/endpoints/iris-prod/").content.decode()
    assert "answers no prediction until the endpoint is started again" in page
    assert 'action="/endpoints/iris-prod/start/"' in page
    assert "Stopped" in client.get("/").content.decode()
    client.post("/endpoints/iris-prod/start/")
    deployment_run(deployment_id=Deployment.objects.get(action="start").pk)
    assert Endpoint.objects.get(pk=endpoint.pk).serving_state == "serving"


def test_a_second_stop_is_refused_with_a_message(client, admin, endpoint, live):
    client.force_login(admin)
    client.post("/endpoints/iris-prod/stop/")
    response = client.post("/endpoints/iris-prod/stop/", follow=True)
    assert "already has a stop in progress" in response.content.decode()


def test_a_team_member_sees_no_operate_card_and_cannot_stop(client, member, endpoint, live):
    client.force_login(member)
    assert 'id="operate"' not in client.get("/endpoints/iris-prod/").content.decode()
    assert client.post("/endpoints/iris-prod/stop/").status_code == 403
    assert client.get("/endpoints/iris-prod/delete/").status_code == 403
    assert not Deployment.objects.filter(action="stop").exists()


def test_the_delete_page_shows_the_plan_and_asks_for_the_name(client, admin, endpoint, live):
    client.force_login(admin)
    page = client.get("/endpoints/iris-prod/delete/").content.decode()
    assert "delete iris-prod and 0 key(s)" in page  # the memory runtime's plan

    wrong = client.post("/endpoints/iris-prod/delete/", {"confirm": "iris"})
    assert wrong.status_code == 400
    assert "Type the endpoint&#x27;s name, iris-prod, to confirm." in wrong.content.decode()
    assert not Deployment.objects.filter(action="delete").exists()

    response = client.post("/endpoints/iris-prod/delete/", {"confirm": "iris-prod"})
    delete = Deployment.objects.get(action="delete")
    assert response["Location"] == f"/deployments/{delete.pk}/"
    deployment_run(deployment_id=delete.pk)

    done = client.get(f"/deployments/{delete.pk}/").content.decode()
    assert "iris-prod (deleted" in done and "its name is free" in done
    assert delete.endpoint.deployments.get(pk=live.pk).status == DeploymentStatus.SUPERSEDED
    assert client.get("/endpoints/iris-prod/").status_code == 404
    assert client.get(f"/deployments/{live.pk}/").status_code == 200  # the history stays
    listed = client.get("/").content.decode()
    assert "Recently deleted" in listed and f'href="/deployments/{delete.pk}/"' in listed
