"""Changes that are not live yet are shown as pending until the runtime has them: access changes
until the worker has pushed them, sizing settings until a deploy, with "Redeploy current version";
settings the runtime does not use are marked so."""

from dataclasses import asdict

from django.urls import reverse

from endpoints.models import Deployment, DeploymentStatus, Endpoint
from endpoints.services.access import access_apply
from endpoints.services.deployments import deployment_request
from endpoints.services.endpoints import endpoint_update
from endpoints.services.operations import deployment_run
from worker.runtimes.base import Resources

SIZING = {"cpu": "2", "memory": "1Gi"}


def page(client, endpoint) -> str:
    return client.get(reverse("endpoints:endpoint-detail", args=[endpoint.name])).content.decode()


def deploy(admin, endpoint, version) -> Deployment:
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=version)
    assert deployment_run(deployment_id=deployment.pk) == DeploymentStatus.READY
    endpoint.refresh_from_db()
    deployment.refresh_from_db()
    return deployment


def test_a_deploy_records_the_settings_it_was_made_with(admin, endpoint, iris_version, memory_runtime):
    endpoint_update(user=admin, endpoint=endpoint, cpu="2", memory="2Gi", max_instances=7)
    deployment = deploy(admin, endpoint, iris_version)
    assert deployment.settings == asdict(
        Resources(region="us-central1", cpu="2", memory="2Gi", min_instances=0, max_instances=7)
    )


def test_a_switched_access_mode_is_told_as_asked_for_until_the_runtime_has_it(
    client, admin, endpoint, iris_version, memory_runtime
):
    deploy(admin, endpoint, iris_version)
    access_apply(endpoint_id=endpoint.pk)  # what the first deploy asked for is in force
    client.force_login(admin)
    before = page(client, endpoint)
    assert "Calls need an <code>x-api-key</code> header" in before and "Not in force yet" not in before

    endpoint_update(user=admin, endpoint=endpoint, access_mode="ip_allowlist")
    switched = page(client, endpoint)
    assert "<strong>Not in force yet:</strong>" in switched
    assert "Once in force, only listed addresses may call it" in switched
    assert "Only listed addresses may call it" not in switched  # not said as if it held
    assert "<strong>pending</strong> since" in switched

    access_apply(endpoint_id=endpoint.pk)  # the worker pushes it to the runtime
    assert memory_runtime.access[endpoint.name].mode == "ip_allowlist"
    applied = page(client, endpoint)
    assert "Not in force yet" not in applied and "Once in force" not in applied
    assert "Only listed addresses may call it (0 entries on the allowlist)" in applied
    assert "every caller is refused until an address is added" in applied


def test_sizing_saved_after_a_deploy_is_pending_with_a_redeploy_of_the_live_version(
    client, admin, endpoint, iris_version, memory_runtime
):
    live = deploy(admin, endpoint, iris_version)
    client.force_login(admin)
    assert 'id="pending"' not in page(client, endpoint)

    response = client.post(
        reverse("endpoints:endpoint-edit", args=[endpoint.name]),
        {
            "description": "",
            "region": "us-central1",
            "min_instances": "0",
            "max_instances": "3",
            "concurrency": "80",
            "timeout_seconds": "60",
            "access_mode": "api_key",
            **SIZING,
        },
        follow=True,
    )
    said = response.content.decode()
    assert "CPU, Memory: pending until a version is deployed again (Redeploy current version below)." in said
    endpoint.refresh_from_db()
    shown = page(client, endpoint)
    assert 'id="pending"' in shown
    assert "<li>CPU: 2 saved, 1 live</li>" in shown and "<li>Memory: 1Gi saved, 512Mi live</li>" in shown
    assert '<span class="tag pending">pending</span> <span class="muted small">live: 1</span>' in shown
    assert "Redeploy current version" in shown
    assert (
        f"Redeploy iris v1 to iris-prod? A new revision of the same version starts with the settings "
        f"saved since deployment #{live.pk}"
    ) in shown

    response = client.post(
        reverse("endpoints:deployment-create", args=[endpoint.name]),
        {"model_version": str(iris_version.pk), "traffic_percent": "100", "confirmed": "1"},
    )
    again = Deployment.objects.exclude(pk=live.pk).get()
    assert response["Location"] == reverse("endpoints:deployment-detail", args=[again.pk])
    assert (again.model_version, again.traffic_percent) == (iris_version, 100)
    deployment_run(deployment_id=again.pk)
    endpoint.refresh_from_db()
    assert 'id="pending"' not in page(client, endpoint)


def test_an_access_mode_that_needs_a_deploy_offers_the_redeploy(
    client, admin, endpoint, iris_version, memory_runtime
):
    deploy(admin, endpoint, iris_version)
    Endpoint.objects.filter(pk=endpoint.pk).update(
        access_mode="ip_allowlist", access_note="The live deployment has no load balancer."
    )
    client.force_login(admin)
    shown = page(client, endpoint)
    assert "<li>Access mode: IP allowlist saved, not in force</li>" in shown
    assert "Redeploy current version" in shown


def test_a_team_member_sees_what_is_pending_but_not_the_redeploy(
    client, admin, member, endpoint, iris_version, memory_runtime
):
    deploy(admin, endpoint, iris_version)
    endpoint_update(user=admin, endpoint=endpoint, **SIZING)
    client.force_login(member)
    shown = page(client, endpoint)
    assert "<li>CPU: 2 saved, 1 live</li>" in shown
    assert "Redeploy current version" not in shown


def test_the_local_runtime_marks_the_settings_it_does_not_use(client, admin, endpoint, iris_version):
    # RUNTIME is "local" by default: one serving process on this machine, no Cloud Run sizing.
    Deployment.objects.create(
        endpoint=endpoint,
        model_version=iris_version,
        requested_by=admin,
        status=DeploymentStatus.READY,
        settings={"region": "us-central1", "cpu": "1"},
    )
    Endpoint.objects.filter(pk=endpoint.pk).update(live_deployment=Deployment.objects.get(), cpu="4")
    client.force_login(admin)
    shown = page(client, endpoint)
    assert shown.count('<span class="tag ignored">not used here</span>') == 7
    assert "does not use it" in shown
    assert 'id="pending"' not in shown  # nothing a redeploy would change
    form = client.get(reverse("endpoints:endpoint-edit", args=[endpoint.name])).content.decode()
    assert form.count("Not used by the local runtime.") == 7
    response = client.post(
        reverse("endpoints:endpoint-edit", args=[endpoint.name]),
        {
            "description": "",
            "region": "europe-west1",
            "cpu": "4",
            "memory": "2Gi",
            "min_instances": "0",
            "max_instances": "3",
            "concurrency": "80",
            "timeout_seconds": "60",
            "access_mode": "api_key",
        },
        follow=True,
    )
    assert "Settings saved. The local runtime does not use Region, Memory." in response.content.decode()
