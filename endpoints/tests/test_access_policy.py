"""Access changes fail closed and take effect at once: attacks on a live local endpoint.

Each test deploys iris with the local runtime (a real serving process on loopback), changes the
access policy through the services as the dashboard and the API do, runs the queued
`worker.apply_access` task's body, and then calls the endpoint as an attacker would: from an
address not on the list (127.0.0.2), without a key, with an emptied allowlist. No test waits for
the serving process to notice: once the task has run, the policy is in force.
"""

import shutil
import threading
import time
from datetime import timedelta

import httpx
import pytest
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from endpoints.demo import IRIS_FEATURES
from endpoints.models import AccessPolicyState, AuditEvent, Endpoint, OwedTask
from endpoints.services import access
from endpoints.services.allowlist import allowlist_add, allowlist_remove
from endpoints.services.deployments import deployment_request
from endpoints.services.endpoints import endpoint_update
from endpoints.services.operations import deployment_run
from portal import queue
from tests.fixtures.jwt_issuer import AUDIENCE, ISSUER, Issuer
from tests.fixtures.worker import revision_pid, session_ports, stop_serving_processes
from worker import tasks
from worker.runtimes.local import LocalRuntime

SETOSA = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))


@pytest.fixture(scope="module")
def module_runtime_dir(tmp_path_factory):
    """A runtime dir of this module's own (other tests expect the session's to hold no iris-prod),
    with one warm launcher for all its tests."""
    root = tmp_path_factory.mktemp("access-runtime")
    yield root
    stop_serving_processes(root, launcher=True)


@pytest.fixture
def runtime_dir(settings, module_runtime_dir):
    settings.LOCAL_RUNTIME_DIR = module_runtime_dir
    settings.LOCAL_RUNTIME_PORT_MIN, settings.LOCAL_RUNTIME_PORT_MAX = session_ports()
    yield module_runtime_dir
    stop_serving_processes(module_runtime_dir)
    shutil.rmtree(module_runtime_dir / "endpoints", ignore_errors=True)


@pytest.fixture
def live(runtime_dir, admin, iris_version, sent) -> Endpoint:
    """The endpoint `iris-open`, open to anyone, serving iris from a real local serving process."""
    from endpoints.services.endpoints import endpoint_create

    endpoint = endpoint_create(user=admin, name="iris-open", access_mode="open")
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    assert deployment_run(deployment_id=deployment.pk) == "ready"
    endpoint.refresh_from_db()
    assert predict(endpoint).status_code == 200
    return endpoint


def predict(
    endpoint: Endpoint, *, key: str | None = None, source: str | None = None, token: str | None = None
) -> httpx.Response:
    """POST /predict to the endpoint, from `source` (a loopback address) if given."""
    transport = httpx.HTTPTransport(local_address=source) if source else None
    with httpx.Client(transport=transport, timeout=10) as client:
        headers = {"x-api-key": key} if key else {}
        if token:
            headers["authorization"] = f"Bearer {token}"
        return client.post(f"{endpoint.url}/predict", json=SETOSA, headers=headers)


def run_queued(sent) -> None:
    """Run the apply_access tasks the services queued, as the worker would (their bodies)."""
    queued = [args for name, args in sent if name == "worker.apply_access"]
    sent.clear()
    assert queued, "no access change was queued"
    for args in queued:
        tasks.apply_access.run(*args)


def fresh(endpoint: Endpoint) -> Endpoint:
    return Endpoint.objects.get(pk=endpoint.pk)


def test_a_mode_change_refuses_callers_outside_the_list_right_after_it_is_applied(
    live, admin, sent, django_capture_on_commit_callbacks
):
    revision = live.live_deployment_id
    pid = revision_pid(live.name, live.live_deployment.resources["revision"])
    with django_capture_on_commit_callbacks(execute=True):
        allowlist_add(user=admin, endpoint=live, cidr="127.0.0.1")
    run_queued(sent)
    assert predict(live, source="127.0.0.2").status_code == 200  # open mode: the list is not checked

    with django_capture_on_commit_callbacks(execute=True):
        endpoint_update(user=admin, endpoint=live, access_mode="ip_allowlist")
    assert fresh(live).access_state == AccessPolicyState.PENDING
    run_queued(sent)

    outside = predict(live, source="127.0.0.2")
    assert (outside.status_code, outside.json()) == (403, {"error": "address not allowed"})
    assert predict(live, source="127.0.0.1").status_code == 200
    # No redeploy: the same deployment and the same process answer.
    endpoint = fresh(live)
    assert endpoint.live_deployment_id == revision
    assert revision_pid(live.name, live.live_deployment.resources["revision"]) == pid
    assert endpoint.access_state == AccessPolicyState.APPLIED
    assert endpoint.access_applied_revision == endpoint.access_revision == 2


def test_switching_an_open_endpoint_to_keys_refuses_callers_without_one_at_once(
    live, admin, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        endpoint_update(user=admin, endpoint=live, access_mode="api_key")
    run_queued(sent)

    response = predict(live)
    assert response.status_code == 401
    assert "x-api-key" in response.json()["error"]
    assert predict(live, key="mep_" + "x" * 43).status_code == 401


@pytest.mark.parametrize("mode", ["ip_allowlist", "both"])
def test_an_emptied_allowlist_refuses_every_caller(
    live, admin, sent, django_capture_on_commit_callbacks, mode
):
    with django_capture_on_commit_callbacks(execute=True):
        endpoint_update(user=admin, endpoint=live, access_mode="ip_allowlist")
        entry = allowlist_add(user=admin, endpoint=live, cidr="127.0.0.0/8")
    run_queued(sent)
    assert predict(live, source="127.0.0.2").status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        if mode == "both":
            endpoint_update(user=admin, endpoint=live, access_mode="both")
        allowlist_remove(user=admin, entry=entry)
    run_queued(sent)

    for source in ("127.0.0.1", "127.0.0.2"):
        response = predict(live, source=source)
        assert response.status_code == 403
        assert "allowlist is empty" in response.json()["error"]
    health = httpx.get(f"{live.url}/healthz", timeout=10)
    ready = httpx.get(f"{live.url}/readyz", timeout=10)
    assert (health.status_code, ready.status_code) == (200, 200)
    assert fresh(live).access_state == AccessPolicyState.APPLIED


def test_an_endpoint_created_in_allowlist_mode_with_no_entries_refuses_every_caller(
    runtime_dir, admin, iris_version, django_capture_on_commit_callbacks, sent
):
    from endpoints.services.endpoints import endpoint_create

    endpoint = endpoint_create(user=admin, name="iris-closed", access_mode="ip_allowlist")
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    assert deployment_run(deployment_id=deployment.pk) == "ready"
    endpoint.refresh_from_db()

    response = predict(endpoint)
    assert response.status_code == 403
    assert "allowlist is empty" in response.json()["error"]
    for path in ("/metrics", "/openapi.json", "/docs", "/"):
        assert httpx.get(f"{endpoint.url}{path}", timeout=10).status_code == 403, path


def test_metrics_stay_readable_by_the_portal_through_the_control_socket(live, admin, sent):
    text = LocalRuntime().read_metrics(live.name)
    assert 'route="/predict",status="200"' in text


def test_a_mode_change_is_audited_and_queued_like_an_allowlist_edit(
    admin, endpoint, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        endpoint_update(user=admin, endpoint=endpoint, access_mode="both", description="now both")
    assert sent == [("worker.apply_access", [endpoint.pk])]
    event = AuditEvent.objects.get(action="endpoint.update")
    assert event.actor == admin
    assert event.details == {"access_mode": "both", "description": "now both", "access_revision": 1}
    endpoint = fresh(endpoint)
    assert (endpoint.access_revision, endpoint.access_applied_revision) == (1, 0)
    assert endpoint.access_state == AccessPolicyState.PENDING
    assert endpoint.access_requested_at is not None

    # Other settings wait for the next deployment: no push for them.
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        endpoint_update(user=admin, endpoint=endpoint, description="just words")
    assert sent == []
    assert fresh(endpoint).access_revision == 1


def test_pending_since_is_the_oldest_change_not_yet_applied(admin, endpoint):
    allowlist_add(user=admin, endpoint=endpoint, cidr="192.0.2.0/24")
    first = fresh(endpoint).access_requested_at
    allowlist_add(user=admin, endpoint=endpoint, cidr="198.51.100.0/24")
    assert fresh(endpoint).access_requested_at == first
    assert fresh(endpoint).access_revision == 2


def test_a_runtime_refusal_is_recorded_shown_and_cleared_by_the_next_change(
    runtime_dir, admin, endpoint, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        allowlist_add(user=admin, endpoint=endpoint, cidr="192.0.2.0/24")
    access_file = runtime_dir / "endpoints" / endpoint.name / "access.json"
    access_file.parent.mkdir(parents=True, exist_ok=True)
    access_file.mkdir()  # a directory where the file goes: the runtime fails in a way it did not foresee
    try:
        with pytest.raises(OSError):
            tasks.apply_access.run(endpoint.pk)
    finally:
        access_file.rmdir()
    # An unexpected error leaves the change pending (and the claim released) for the next try.
    endpoint = fresh(endpoint)
    assert endpoint.access_state == AccessPolicyState.PENDING
    assert endpoint.access_claimed_until is None

    access.access_fail(endpoint_id=endpoint.pk, error="Cloud Armor said no.")
    endpoint = fresh(endpoint)
    assert endpoint.access_state == AccessPolicyState.FAILED
    assert endpoint.access_error == "Cloud Armor said no."
    assert AuditEvent.objects.get(action="access.failed").details["error"] == "Cloud Armor said no."

    with django_capture_on_commit_callbacks(execute=True):
        allowlist_add(user=admin, endpoint=endpoint, cidr="198.51.100.0/24")
    assert fresh(endpoint).access_state == AccessPolicyState.PENDING
    run_queued(sent)
    endpoint = fresh(endpoint)
    assert endpoint.access_state == AccessPolicyState.APPLIED and endpoint.access_error == ""


def test_a_second_worker_finds_the_endpoint_claimed_and_leaves_the_change_owed(
    admin, endpoint, sent, settings
):
    allowlist_add(user=admin, endpoint=endpoint, cidr="192.0.2.0/24")
    Endpoint.objects.filter(pk=endpoint.pk).update(access_claimed_until=timezone.now() + timedelta(minutes=5))

    assert tasks.apply_access.apply(args=[endpoint.pk]).get() == access.BUSY

    # Not a failure: the claim's holder pushes every change it finds, and should it have died the
    # relay sends the task again soon, to find out once its claim has lapsed.
    endpoint = fresh(endpoint)
    assert endpoint.access_state == AccessPolicyState.PENDING and endpoint.access_error == ""
    owed = OwedTask.objects.get(task=queue.APPLY_ACCESS, object_id=endpoint.pk)
    assert timezone.now() < owed.due_at <= timezone.now() + timedelta(seconds=settings.TASK_RESEND_SECONDS)


@pytest.mark.django_db(transaction=True)
def test_the_access_claim_is_renewed_while_the_runtime_works_and_lapses_soon_after_its_worker(
    admin, endpoint, memory_runtime, sent, settings
):
    settings.DEPLOY_CLAIM_SECONDS = 1
    allowlist_add(user=admin, endpoint=endpoint, cidr="192.0.2.0/24")
    memory_runtime.slow("apply_access", 2.0)

    def push() -> None:
        try:
            access.access_apply(endpoint_id=endpoint.pk)
        finally:
            connections.close_all()

    pusher = threading.Thread(target=push)
    pusher.start()
    time.sleep(1.5)  # past the first lease: still held, and never for much longer than a lease
    claimed_until = fresh(endpoint).access_claimed_until
    now = timezone.now()
    pusher.join(10)

    assert claimed_until is not None and now < claimed_until <= now + timedelta(seconds=1)
    endpoint = fresh(endpoint)
    assert endpoint.access_state == AccessPolicyState.APPLIED and endpoint.access_claimed_until is None


def test_the_api_shows_whether_the_live_policy_is_the_one_asked_for(
    runtime_dir, admin, endpoint, sent, django_capture_on_commit_callbacks
):
    client = APIClient()
    client.force_authenticate(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.patch(f"/api/v1/endpoints/{endpoint.name}/", {"access_mode": "both"}, format="json")
    assert response.status_code == 200, response.content
    policy = response.json()["access_policy"]
    assert (policy["state"], policy["revision"], policy["applied_revision"]) == ("pending", 1, 0)
    assert policy["pending_since"] and policy["error"] == "" and policy["note"] == ""

    run_queued(sent)
    policy = client.get(f"/api/v1/endpoints/{endpoint.name}/").json()["access_policy"]
    assert (policy["state"], policy["revision"], policy["applied_revision"]) == ("applied", 1, 1)
    assert policy["pending_since"] is None and policy["applied_at"]


def test_switching_an_open_endpoint_to_identity_checks_bearer_tokens_at_once(
    live, admin, sent, django_capture_on_commit_callbacks
):
    pid = revision_pid(live.name, live.live_deployment.resources["revision"])
    with Issuer() as issuer:
        with django_capture_on_commit_callbacks(execute=True):
            endpoint_update(
                user=admin,
                endpoint=live,
                access_mode="identity",
                identity_issuer=ISSUER,
                identity_audience=AUDIENCE,
                identity_jwks_url=issuer.jwks_url,
                identity_claim="groups=ml-callers",
            )
        run_queued(sent)

        refused = predict(live)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        wrong = predict(live, token=issuer.token(groups=["staff"]))
        assert (wrong.status_code, wrong.json()["reason"]) == (401, "missing_claim")
        assert predict(live, token=issuer.token(groups=["ml-callers"])).status_code == 200
        assert predict(live, token=issuer.token(algorithm="ES256", groups="ml-callers")).status_code == 200
        # No redeploy: the same process checks tokens.
        assert revision_pid(live.name, live.live_deployment.resources["revision"]) == pid
        assert fresh(live).access_state == AccessPolicyState.APPLIED

    with django_capture_on_commit_callbacks(execute=True):
        endpoint_update(user=admin, endpoint=fresh(live), access_mode="open")
    run_queued(sent)
    assert predict(live).status_code == 200
