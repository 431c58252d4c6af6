"""Asking for a progressive deploy through the REST API and the dashboard, and seeing it."""

# ruff: noqa: F811 (the twins fixture of test_parity, imported, is redefined as an argument)

from django.urls import reverse

from endpoints.models import Deployment, RolloutStatus
from endpoints.tests.test_parity import api_deploy, api_error, form_error, make_live, twins, web, web_deploy  # noqa: F401

ASKED = {
    "progressive": True,
    "rollout_steps": [5, 25, 100],
    "rollout_step_seconds": 120,
    "rollout_window_seconds": 60,
    "rollout_max_error_percent": 2.5,
    "rollout_max_p99_ms": 250,
    "rollout_min_requests": 30,
}


def test_the_api_and_the_dashboard_record_the_same_progressive_deploy(
    admin, twins, iris_version, memory_runtime
):
    stable = [make_live(admin, endpoint, iris_version) for endpoint in twins]
    via_api = api_deploy(admin, twins[0], iris_version, **ASKED)
    via_web = web_deploy(
        admin, twins[1], iris_version, **{**ASKED, "rollout_steps": "5, 25, 100", "progressive": "on"}
    )
    assert (via_api.status_code, via_web.status_code) == (202, 302)
    rollout = via_api.json()["rollout"]
    assert rollout["status"] == "pending" and rollout["steps"] == [5, 25, 100]
    assert via_api.json()["traffic_percent"] == 5
    made = [
        Deployment.objects.get(pk=via_api.json()["id"]),
        Deployment.objects.filter(endpoint=twins[1]).exclude(rollout_status="").get(),
    ]
    for deployment, shared in zip(made, stable, strict=True):
        assert (deployment.traffic_percent, deployment.rollout_status, deployment.shares_with) == (
            5,
            RolloutStatus.PENDING,
            shared,
        )
        assert (
            deployment.rollout_step_seconds,
            deployment.rollout_window_seconds,
            deployment.rollout_max_error_percent,
            deployment.rollout_max_p99_ms,
            deployment.rollout_min_requests,
        ) == (120, 60, 2.5, 250, 30)


def test_bad_steps_are_refused_in_the_same_words(admin, twins, iris_version, memory_runtime):
    for endpoint in twins:
        make_live(admin, endpoint, iris_version)
    via_api = api_deploy(admin, twins[0], iris_version, progressive=True, rollout_steps=[50, 10, 100])
    via_web = web_deploy(admin, twins[1], iris_version, progressive="on", rollout_steps="50,10,100")
    assert (via_api.status_code, via_web.status_code) == (400, 400)
    assert (
        api_error(via_api)
        == form_error(via_web, "deploy_form")
        == (
            "rollout_steps",
            "Steps must rise, start below 100 and end at 100, e.g. 10,50,100.",
        )
    )


def test_rollout_settings_without_progressive_are_refused_naming_the_field(
    admin, twins, iris_version, memory_runtime
):
    make_live(admin, twins[0], iris_version)
    response = api_deploy(admin, twins[0], iris_version, rollout_min_requests=10)
    assert response.status_code == 400 and response.json()["field"] == "rollout_min_requests"


def test_an_out_of_range_setting_is_refused_in_the_same_words(admin, twins, iris_version, memory_runtime):
    for endpoint in twins:
        make_live(admin, endpoint, iris_version)
    via_api = api_deploy(admin, twins[0], iris_version, progressive=True, rollout_step_seconds=5)
    via_web = web_deploy(admin, twins[1], iris_version, progressive="on", rollout_step_seconds=5)
    assert (via_api.status_code, via_web.status_code) == (400, 400)
    assert (
        api_error(via_api)
        == form_error(via_web, "deploy_form")
        == (
            "rollout_step_seconds",
            "Give a whole number from 10 to 604800.",
        )
    )


def test_the_schema_says_what_a_progressive_deploy_takes(admin, db):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(admin)
    schema = client.get("/api/schema/?format=json").json()["components"]["schemas"]
    asked = schema["DeployRequestRequest"]["properties"]
    assert asked["rollout_steps"]["items"] == {"type": "integer", "maximum": 100, "minimum": 1}
    assert (asked["rollout_step_seconds"]["minimum"], asked["rollout_window_seconds"]["maximum"]) == (
        10,
        86400,
    )
    assert "5xx" in asked["rollout_max_error_percent"]["description"]
    assert set(schema["Rollout"]["properties"]) >= {
        "status",
        "percent",
        "steps",
        "next_at",
        "reason",
        "shares_with",
    }


def test_the_deploy_form_offers_progressive_and_the_deployment_page_shows_the_rollout(
    admin,
    twins,
    iris_version,
    memory_runtime,
):
    make_live(admin, twins[0], iris_version)
    client = web(admin)
    page = client.get(reverse("endpoints:endpoint-detail", args=[twins[0].name])).content.decode()
    assert 'name="progressive"' in page and 'placeholder="10,50,100"' in page
    response = web_deploy(admin, twins[0], iris_version, progressive="on", rollout_steps="20,100")
    deployment = Deployment.objects.get(pk=response.url.rstrip("/").rsplit("/", 1)[1])
    from endpoints.services.operations import deployment_run

    deployment_run(deployment_id=deployment.pk)
    page = client.get(reverse("endpoints:deployment-detail", args=[deployment.pk])).content.decode()
    assert "Rollout" in page and "Advancing" in page and "rollout-current" in page
    assert f'hx-get="/deployments/{deployment.pk}/rollout/"' in page
    partial = client.get(
        reverse("endpoints:deployment-rollout", args=[deployment.pk]), HTTP_HX_REQUEST="true"
    )
    assert partial.status_code == 200 and "20%" in partial.content.decode()
