"""Access changes through the portal's services on RUNTIME=gcp, against the fake Google servers.

An emptied allowlist leaves Cloud Armor with its default deny alone; a mode change is applied at
once where the live front can enforce it, and where it needs another front (API Gateway for keys,
a load balancer for an allowlist) the endpoint says a deploy is needed instead of pretending.
"""

import pytest
from rest_framework.test import APIClient

from endpoints.models import AccessPolicyState, Deployment, DeploymentStatus, Endpoint
from endpoints.services.allowlist import allowlist_add, allowlist_remove
from endpoints.services.endpoints import endpoint_create, endpoint_update
from tests.fakes.fixtures import *  # noqa: F403
from worker import tasks

POLICY = "guarded-allowlist"


@pytest.fixture
def fast(gcp_settings):
    gcp_settings.GCP_RETRY_INITIAL_SECONDS = 0.001
    gcp_settings.GCP_POLL_INTERVAL_SECONDS = 0.001
    return gcp_settings


def run_queued(sent) -> None:
    queued = [args for name, args in sent if name == "worker.apply_access"]
    sent.clear()
    assert queued
    for args in queued:
        tasks.apply_access.run(*args)


def go_live(endpoint, version, admin, resources: dict) -> Deployment:
    """Record a finished deployment as the endpoint's live one, with the resources a deploy left."""
    deployment = Deployment.objects.create(
        endpoint=endpoint,
        model_version=version,
        status=DeploymentStatus.READY,
        requested_by=admin,
        resources={"revision": f"{endpoint.name}-d1", **resources},
    )
    Endpoint.objects.filter(pk=endpoint.pk).update(live_deployment=deployment)
    endpoint.refresh_from_db()
    return deployment


def test_an_emptied_allowlist_leaves_cloud_armor_with_the_default_deny_alone(
    fast, fakes, admin, sent, django_capture_on_commit_callbacks
):
    endpoint = endpoint_create(user=admin, name="guarded", access_mode="ip_allowlist")
    with django_capture_on_commit_callbacks(execute=True):
        first = allowlist_add(user=admin, endpoint=endpoint, cidr="198.51.100.0/24")
        second = allowlist_add(user=admin, endpoint=endpoint, cidr="203.0.113.7")
    run_queued(sent)
    assert 1000 in fakes.compute.rules(POLICY)

    with django_capture_on_commit_callbacks(execute=True):
        allowlist_remove(user=admin, entry=first)
        allowlist_remove(user=admin, entry=second)
    run_queued(sent)

    rules = fakes.compute.rules(POLICY)
    assert list(rules) == [2147483647]
    assert (rules[2147483647]["action"], rules[2147483647]["match"]["config"]["srcIpRanges"]) == (
        "deny(403)",
        ["*"],
    )
    endpoint.refresh_from_db()
    assert endpoint.access_state == AccessPolicyState.APPLIED


def test_a_mode_change_the_gateway_can_enforce_is_applied_at_once(
    fast, fakes, admin, sent, iris_version, django_capture_on_commit_callbacks
):
    endpoint = endpoint_create(user=admin, name="guarded", access_mode="api_key")
    go_live(endpoint, iris_version, admin, {"gateway": "projects/p/locations/us-central1/gateways/guarded"})
    issued = google_key(fakes, endpoint)
    with django_capture_on_commit_callbacks(execute=True):
        allowlist_add(user=admin, endpoint=endpoint, cidr="198.51.100.0/24")
        endpoint_update(user=admin, endpoint=endpoint, access_mode="both")
    run_queued(sent)

    key = fakes.keys.key(issued)
    assert list(key.restrictions.server_key_restrictions.allowed_ips) == ["198.51.100.0/24"]
    endpoint.refresh_from_db()
    assert (endpoint.access_state, endpoint.access_note) == (AccessPolicyState.APPLIED, "")


def test_a_mode_change_that_needs_another_front_says_a_deploy_is_needed_and_keeps_the_stricter_policy(
    fast, fakes, admin, sent, iris_version, django_capture_on_commit_callbacks
):
    endpoint = endpoint_create(user=admin, name="guarded", access_mode="api_key")
    go_live(endpoint, iris_version, admin, {"gateway": "projects/p/locations/us-central1/gateways/guarded"})
    issued = google_key(fakes, endpoint)
    client = APIClient()
    client.force_authenticate(admin)
    with django_capture_on_commit_callbacks(execute=True):
        allowlist_add(user=admin, endpoint=endpoint, cidr="198.51.100.0/24")
        response = client.patch("/api/v1/endpoints/guarded/", {"access_mode": "ip_allowlist"}, format="json")
    assert response.status_code == 200, response.content
    note = response.json()["access_policy"]["note"]
    assert "needs an HTTPS load balancer with Cloud Armor" in note
    assert "Deploy the endpoint again" in note

    run_queued(sent)

    policy = client.get("/api/v1/endpoints/guarded/").json()["access_policy"]
    assert policy["state"] == "needs_deploy" and policy["note"] == note
    # The gateway keeps checking keys, each now tied to the allowlist: no less strict than asked.
    key = fakes.keys.key(issued)
    assert list(key.restrictions.server_key_restrictions.allowed_ips) == ["198.51.100.0/24"]
    assert POLICY not in fakes.compute.policies  # no Cloud Armor policy that nothing would use


def google_key(fakes, endpoint) -> str:
    """A key of the endpoint at Google, as an issued request leaves it; returns its name."""
    from worker.runtimes import get_runtime
    from worker.runtimes.base import KeySpec

    issued = get_runtime().issue_key(
        KeySpec(endpoint=endpoint.name, key_id="r1", display_name="Data science")
    )
    return issued.name
