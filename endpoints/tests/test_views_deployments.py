"""Deploying from the endpoint page, watching the steps live, rolling back."""

from django.urls import reverse

from endpoints.models import Deployment, DeploymentStatus, Endpoint
from endpoints.services.deployments import deployment_finish, deployment_request

HTMX = {"HTTP_HX_REQUEST": "true"}
CONFIRMED = {"confirmed": "1"}  # as the page sends it once its question is answered


def deploy_url(endpoint) -> str:
    return reverse("endpoints:deployment-create", args=[endpoint.name])


def _make_live(admin, endpoint, version, url="http://127.0.0.1:18100") -> Deployment:
    """A deployment the worker has finished (its steps done, its URL recorded)."""
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=version)
    Deployment.objects.filter(pk=deployment.pk).update(
        status=DeploymentStatus.RUNNING,
        steps=[
            {
                "step": "start",
                "title": "Start a serving process",
                "state": "done",
                "seconds": 0.5,
                "message": "",
            }
        ],
        resources={"url": url, "revision": f"{endpoint.name}-d{deployment.pk}"},
    )
    deployment_finish(deployment_id=deployment.pk)
    endpoint.refresh_from_db()
    deployment.refresh_from_db()
    return deployment


def test_an_admin_deploys_and_lands_on_the_deployment_page(client, admin, endpoint, iris_version):
    client.force_login(admin)
    page = client.get(reverse("endpoints:endpoint-detail", args=[endpoint.name])).content.decode()
    assert 'name="traffic_percent"' not in page  # nothing is live, so there is no traffic to share
    response = client.post(deploy_url(endpoint), {"model_version": iris_version.pk, "confirmed": "1"})
    deployment = Deployment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("endpoints:deployment-detail", args=[deployment.pk])
    assert (deployment.status, deployment.traffic_percent, deployment.requested_by) == ("queued", 100, admin)
    page = client.get(response["Location"]).content.decode()
    assert "Waiting for a worker" in page
    assert 'hx-trigger="every 1s"' in page


def test_a_team_member_cannot_deploy(client, member, endpoint, iris_version):
    client.force_login(member)
    response = client.post(deploy_url(endpoint), {"model_version": iris_version.pk, "confirmed": "1"})
    assert response.status_code == 403
    assert not Deployment.objects.exists()
    page = client.get(reverse("endpoints:endpoint-detail", args=[endpoint.name])).content.decode()
    assert 'action="' + deploy_url(endpoint) not in page


def test_a_second_deploy_while_one_is_in_progress_is_refused_with_a_message(
    client, admin, endpoint, iris_version
):
    client.force_login(admin)
    client.post(deploy_url(endpoint), {"model_version": iris_version.pk, "confirmed": "1"})
    response = client.post(deploy_url(endpoint), {"model_version": iris_version.pk, "confirmed": "1"})
    assert response.status_code == 400
    assert "already has a deployment in progress" in response.content.decode()
    assert Deployment.objects.count() == 1


def test_a_canary_share_is_offered_once_something_is_live(
    client, admin, endpoint, iris_version, memory_runtime
):
    _make_live(admin, endpoint, iris_version)
    client.force_login(admin)
    page = client.get(reverse("endpoints:endpoint-detail", args=[endpoint.name])).content.decode()
    assert 'name="traffic_percent"' in page
    response = client.post(
        deploy_url(endpoint), {"model_version": iris_version.pk, "traffic_percent": "10", "confirmed": "1"}
    )
    assert response.status_code == 302
    assert Deployment.objects.filter(status="queued").get().traffic_percent == 10


def test_the_form_offers_a_share_exactly_when_the_runtime_can_split_traffic(
    client, admin, endpoint, iris_version, settings
):
    _make_live(admin, endpoint, iris_version)
    client.force_login(admin)
    page = client.get(reverse("endpoints:endpoint-detail", args=[endpoint.name])).content.decode()
    assert 'name="traffic_percent"' in page  # the local runtime: two revisions share the port
    settings.RUNTIME = "endpoints.tests.test_deployment_plan.OneVersionRuntime"
    page = client.get(reverse("endpoints:endpoint-detail", args=[endpoint.name])).content.decode()
    assert 'name="traffic_percent"' not in page  # it serves one version at a time


def test_a_traffic_share_out_of_range_is_refused_on_its_field(
    client, admin, endpoint, iris_version, memory_runtime
):
    _make_live(admin, endpoint, iris_version)
    client.force_login(admin)
    response = client.post(
        deploy_url(endpoint), {"model_version": iris_version.pk, "traffic_percent": "0", "confirmed": "1"}
    )
    assert response.status_code == 400
    assert response.context["deploy_form"].errors["traffic_percent"] == [
        "Traffic must be a whole percentage from 1 to 100."
    ]
    assert not Deployment.objects.filter(status="queued").exists()


def test_the_steps_partial_polls_while_active_and_stops_with_the_url_when_ready(
    client, member, admin, endpoint, iris_version
):
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    url = reverse("endpoints:deployment-detail", args=[deployment.pk])
    client.force_login(member)
    response = client.get(url, **HTMX)
    partial = response.content.decode()
    assert "<html" not in partial
    assert 'hx-trigger="every 1s"' in partial
    assert "HX-Request" in response["Vary"]

    Deployment.objects.filter(pk=deployment.pk).update(
        status=DeploymentStatus.RUNNING,
        steps=[{"step": "start", "title": "Start a serving process", "state": "running", "message": ""}],
    )
    partial = client.get(url, **HTMX).content.decode()
    assert "Start a serving process" in partial and "badge-running" in partial
    assert 'hx-trigger="every 1s"' in partial

    Deployment.objects.filter(pk=deployment.pk).update(
        steps=[
            {
                "step": "start",
                "title": "Start a serving process",
                "state": "done",
                "seconds": 1.24,
                "message": "pid 7",
            }
        ],
        resources={"url": "http://127.0.0.1:18123"},
    )
    deployment_finish(deployment_id=deployment.pk)
    partial = client.get(url, **HTMX).content.decode()
    assert "hx-trigger" not in partial
    assert "badge-ready" in partial and "1.2 s" in partial and "pid 7" in partial
    assert "http://127.0.0.1:18123" in partial


def test_a_failed_deployment_shows_its_error(client, admin, endpoint, iris_version):
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    Deployment.objects.filter(pk=deployment.pk).update(
        status=DeploymentStatus.FAILED, error="Start a serving process: port 18100 is taken"
    )
    client.force_login(admin)
    page = client.get(reverse("endpoints:deployment-detail", args=[deployment.pk])).content.decode()
    assert "port 18100 is taken" in page and "badge-failed" in page
    assert "hx-trigger" not in page


def test_rolling_back_deploys_the_earlier_version_again(client, admin, endpoint, iris_version):
    first = _make_live(admin, endpoint, iris_version)
    second = _make_live(admin, endpoint, iris_version)
    first.refresh_from_db()
    assert first.status == DeploymentStatus.SUPERSEDED
    client.force_login(admin)
    page = client.get(reverse("endpoints:endpoint-detail", args=[endpoint.name])).content.decode()
    assert reverse("endpoints:deployment-rollback", args=[first.pk]) in page
    assert reverse("endpoints:deployment-rollback", args=[second.pk]) not in page  # it is live

    response = client.post(reverse("endpoints:deployment-rollback", args=[first.pk]), CONFIRMED)
    rollback = Deployment.objects.get(status="queued")
    assert response["Location"] == reverse("endpoints:deployment-detail", args=[rollback.pk])
    assert rollback.rollback_of == first and rollback.model_version == iris_version


def test_rolling_back_to_the_live_deployment_is_refused_with_a_message(client, admin, endpoint, iris_version):
    live = _make_live(admin, endpoint, iris_version)
    client.force_login(admin)
    response = client.post(reverse("endpoints:deployment-rollback", args=[live.pk]), CONFIRMED, follow=True)
    assert "already live" in response.content.decode()
    assert not Deployment.objects.filter(status="queued").exists()


def test_a_team_member_cannot_roll_back(client, member, admin, endpoint, iris_version):
    first = _make_live(admin, endpoint, iris_version)
    _make_live(admin, endpoint, iris_version)
    client.force_login(member)
    assert (
        client.post(reverse("endpoints:deployment-rollback", args=[first.pk]), CONFIRMED).status_code == 403
    )
    assert Deployment.objects.count() == 2
    assert Endpoint.objects.get().live_deployment_id != first.pk
