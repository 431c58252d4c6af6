"""An allowlist endpoint's HTTPS front on Google Cloud: the page names the DNS record to create and
the managed certificate's status, read by beat, and shows the https address as live only once
Google has issued the certificate."""

import pytest
from django.test import Client

from endpoints.models import AuditEvent, Deployment, DeploymentStatus
from endpoints.services.deployments import deployment_request
from endpoints.services.endpoints import endpoint_create
from endpoints.services.fronts import https_fronts_refresh
from endpoints.services.lifecycle import endpoint_delete
from endpoints.services.operations import deployment_run
from tests.fakes.fixtures import *  # noqa: F403

HOST = "iris-guarded.models.example.com"


@pytest.fixture
def fast(gcp_settings):
    gcp_settings.GCP_RETRY_INITIAL_SECONDS = 0.001
    gcp_settings.GCP_POLL_INTERVAL_SECONDS = 0.001
    return gcp_settings


@pytest.fixture
def deployed(fast, fakes, admin, iris_version):
    endpoint = endpoint_create(user=admin, name="iris-guarded", access_mode="ip_allowlist")
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    assert deployment_run(deployment_id=deployment.pk) == DeploymentStatus.READY, deployment.error
    endpoint.refresh_from_db()
    return endpoint


def page(admin, endpoint) -> str:
    client = Client()
    client.force_login(admin)
    return client.get(f"/endpoints/{endpoint.name}/").content.decode()


def test_until_the_certificate_is_active_the_page_shows_the_dns_record_not_a_live_address(
    deployed, fakes, admin
):
    address = deployed.https_address
    assert address and deployed.url == f"https://{HOST}" and deployed.https_pending

    shown = page(admin, deployed)
    assert "Not yet reachable over HTTPS" in shown and "End users call" not in shown
    assert f"{HOST}. A {address}" in shown and "not read yet" in shown

    assert https_fronts_refresh() == ["iris-guarded"]
    deployed.refresh_from_db()
    assert deployed.certificate_status == "PROVISIONING" and deployed.https_pending
    assert "<strong>PROVISIONING</strong>" in page(admin, deployed)

    fakes.compute.set_certificate("iris-guarded-cert", "PROVISIONING", {HOST: "FAILED_NOT_VISIBLE"})
    assert https_fronts_refresh() == []  # the certificate's own status did not change
    deployed.refresh_from_db()
    assert deployed.certificate_detail == f"{HOST}: FAILED_NOT_VISIBLE"

    fakes.compute.set_certificate("iris-guarded-cert", "ACTIVE")
    assert https_fronts_refresh() == ["iris-guarded"]
    deployed.refresh_from_db()
    assert not deployed.https_pending
    shown = page(admin, deployed)
    assert f'End users call <code class="url">https://{HOST}</code>' in shown
    assert "Not yet reachable" not in shown


def test_an_endpoint_without_a_load_balancer_has_no_https_front(fast, fakes, admin, endpoint, iris_version):
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    assert deployment_run(deployment_id=deployment.pk) == DeploymentStatus.READY
    endpoint.refresh_from_db()

    assert endpoint.https_address == "" and not endpoint.https_pending
    assert https_fronts_refresh() == []
    assert "End users call" in page(admin, endpoint)


def test_a_certificate_google_will_never_issue_is_replaced_and_the_delete_leaves_neither(
    deployed, fakes, admin
):
    fakes.compute.set_certificate(
        "iris-guarded-cert", "PROVISIONING_FAILED_PERMANENTLY", {HOST: "FAILED_NOT_VISIBLE"}
    )

    assert https_fronts_refresh() == ["iris-guarded"]

    proxy = fakes.compute.resources["global/targetHttpsProxies/iris-guarded-proxy"]
    assert [link.rsplit("/", 1)[-1] for link in proxy["sslCertificates"]] == ["iris-guarded-cert-2"]
    assert "global/sslCertificates/iris-guarded-cert" not in fakes.compute.resources
    replaced = fakes.compute.resources["global/sslCertificates/iris-guarded-cert-2"]["managed"]
    assert replaced["domains"] == [HOST] and replaced["status"] == "PROVISIONING"
    event = AuditEvent.objects.get(action="endpoint.certificate_replace")
    assert event.details == {"certificate": "iris-guarded-cert-2", "failed": f"{HOST}: FAILED_NOT_VISIBLE"}
    deployed.refresh_from_db()
    assert (
        deployed.certificate_status == "PROVISIONING"
        and "replaced one that ended in" in deployed.certificate_detail
    )

    # The next time, the names take turns back.
    fakes.compute.set_certificate("iris-guarded-cert-2", "PROVISIONING_FAILED_PERMANENTLY")
    https_fronts_refresh()
    proxy = fakes.compute.resources["global/targetHttpsProxies/iris-guarded-proxy"]
    assert [link.rsplit("/", 1)[-1] for link in proxy["sslCertificates"]] == ["iris-guarded-cert"]
    fakes.compute.set_certificate("iris-guarded-cert", "PROVISIONING_FAILED_PERMANENTLY")
    https_fronts_refresh()

    endpoint_delete(user=admin, endpoint=deployed, confirm=deployed.name)
    operation = Deployment.objects.get(endpoint=deployed, action="delete")
    assert deployment_run(deployment_id=operation.pk) == DeploymentStatus.DONE, operation.error
    assert not [key for key in fakes.compute.resources if "sslCertificates" in key]
