"""The whole loop with a real Celery worker, PostgreSQL, Redis and local serving processes.

An admin deploys through the REST API, a team gets a key through the API, an end user calls the
endpoint with it; keys are revoked, versions swapped under load, a broken version refused, and a
worker that dies mid-deploy is picked up again by the reconcile task.
"""

import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from endpoints.demo import IRIS_FEATURES, IRIS_LABELS, NamedBytes
from endpoints.models import ApiKey, ApiKeyRequest, Deployment, DeploymentStatus, Endpoint, OwedTask
from endpoints.services.deployments import deployment_request, model_spec_for
from endpoints.services.operations import deployment_run
from endpoints.services.versions import model_version_register
from portal import queue
from portal.celery import app
from worker.runtimes.local import launcher, processes
from worker.tests.test_local_runtime import Hammer, wait_until

pytestmark = pytest.mark.integration

SETOSA = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))


@pytest.fixture(autouse=True)
def _static_root(settings, tmp_path):
    # WhiteNoise warns (an error under our filters) when STATIC_ROOT does not exist yet.
    settings.STATIC_ROOT = tmp_path


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def another_iris_version(admin, ml_model, *, c: float):
    """A different fit of iris (so a different artifact and sha256) as the model's next version."""
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    frame = load_iris(as_frame=True).frame
    features = frame.iloc[:, :4]
    features.columns = IRIS_FEATURES
    data = sio.dumps(LogisticRegression(max_iter=1000, C=c).fit(features, frame["target"]))
    return model_version_register(
        user=admin, ml_model=ml_model, upload=NamedBytes(data, "iris.skops"), label_map=IRIS_LABELS
    )


def wait_for_deployment(deployment_id: int, *, timeout: float = 60, poll: float = 0.05) -> Deployment:
    deadline = time.monotonic() + timeout
    while True:
        deployment = Deployment.objects.get(pk=deployment_id)
        if deployment.status in (DeploymentStatus.READY, DeploymentStatus.FAILED):
            return deployment
        if time.monotonic() >= deadline:
            raise AssertionError(f"deployment {deployment_id} still {deployment.status}: {deployment.steps}")
        time.sleep(poll)


def deploy_through_the_api(admin, endpoint, version) -> int:
    response = api(admin).post(
        f"/api/v1/endpoints/{endpoint.name}/deploy/", {"model_version": version.pk}, format="json"
    )
    assert response.status_code == 202, response.content
    return response.json()["id"]


def predict(url: str, key: str | None = None, timeout: float = 10) -> httpx.Response:
    headers = {"x-api-key": key} if key else {}
    return httpx.post(f"{url}/predict", json=SETOSA, headers=headers, timeout=timeout)


def endpoint_dir(endpoint) -> Path:
    return Path(settings.LOCAL_RUNTIME_DIR) / "endpoints" / endpoint.name


def serving_pids(endpoint) -> list[int]:
    pids = [processes.read_pid_file(pid_file) for pid_file in endpoint_dir(endpoint).glob("*.pid")]
    return [pid for pid in pids if pid is not None]


def test_deploy_key_revoke_swap_and_a_broken_version(
    celery_worker_process, admin, member, team, endpoint, iris_version
):
    # An admin deploys iris through the API; the endpoint answers within seconds.
    started = time.monotonic()
    first_id = deploy_through_the_api(admin, endpoint, iris_version)
    first = wait_for_deployment(first_id)
    assert first.status == DeploymentStatus.READY, (first.error, celery_worker_process.log_text())
    endpoint.refresh_from_db()
    assert endpoint.url == first.resources["url"]
    assert predict(endpoint.url).status_code == 401  # api_key mode, and no key yet
    answered = time.monotonic() - started
    print(f"\nlocal deploy of iris, API call to the endpoint answering: {answered:.2f}s")
    assert [step["step"] for step in first.steps] == [
        "artifact",
        "access",
        "start",
        "ready",
        "switch",
        "stop_previous",
    ]
    assert all(step["state"] == "done" and step["message"] for step in first.steps)

    # A team member asks for a key, an admin approves, the worker issues it, the member sees it once.
    response = api(member).post(
        "/api/v1/key-requests/",
        {"endpoint": endpoint.name, "team": team.pk, "reason": "Scoring flowers in the nightly batch"},
        format="json",
    )
    assert response.status_code == 201, response.content
    request_id = response.json()["id"]
    assert (
        api(admin).post(f"/api/v1/key-requests/{request_id}/approve/", {}, format="json").status_code == 200
    )
    assert wait_until(lambda: ApiKeyRequest.objects.get(pk=request_id).status == "issued", timeout=20), (
        celery_worker_process.log_text()
    )
    response = api(member).post(f"/api/v1/key-requests/{request_id}/reveal/")
    assert response.status_code == 200, response.content
    secret = response.json()["key"]

    assert wait_until(lambda: predict(endpoint.url, secret).status_code == 200, timeout=10)
    answer = predict(endpoint.url, secret).json()
    assert answer["target"] == "setosa"
    # The endpoint serves the version's verified ONNX form, with the linear kernel read from it.
    served = httpx.get(f"{endpoint.url}/v1/model", headers={"x-api-key": secret}, timeout=5).json()
    assert (served["format"], served["sha256"]) == ("onnx", iris_version.onnx_sha256)
    assert served["backend"] == (
        "onnxruntime (float64), NumPy for batches of up to 128 rows + Python linear kernel for one row"
    )

    # Swapping in another version under load fails no request; the old process is gone after.
    old_pids = serving_pids(endpoint)
    assert len(old_pids) == 1
    second_version = another_iris_version(admin, iris_version.model, c=0.5)
    with Hammer(endpoint.url, key=secret) as hammer:
        hammer.wait_for(20)
        second = wait_for_deployment(deploy_through_the_api(admin, endpoint, second_version))
        hammer.wait_for(20)
    assert second.status == DeploymentStatus.READY, second.error
    assert hammer.failures == [], hammer.failures[:5]
    assert hammer.ok > 40
    assert not any(processes.alive(pid) for pid in old_pids)
    assert len(serving_pids(endpoint)) == 1
    assert second.resources["previous_revision"] == first.resources["revision"]

    # Revoking the key shuts it out within seconds.
    key = ApiKey.objects.get(request_id=request_id)
    assert api(admin).post(f"/api/v1/keys/{key.pk}/revoke/").status_code == 200
    revoked_at = time.monotonic()
    assert wait_until(lambda: predict(endpoint.url, secret).status_code == 403, timeout=10)
    assert time.monotonic() - revoked_at < 5

    # A version whose stored artifact was damaged fails with the reason; the live one still serves.
    broken = another_iris_version(admin, iris_version.model, c=3.0)
    with open(model_spec_for(broken).artifact_path, "r+b") as artifact:
        artifact.seek(100)
        artifact.write(b"damaged!")
    failed = wait_for_deployment(deploy_through_the_api(admin, endpoint, broken))
    assert failed.status == DeploymentStatus.FAILED
    assert "sha256 mismatch" in failed.error
    endpoint.refresh_from_db()
    assert endpoint.live_deployment_id == second.pk
    assert httpx.get(f"{endpoint.url}/readyz", timeout=5).status_code == 200
    assert predict(endpoint.url, secret).status_code == 403  # still the live process, still enforcing
    assert len(serving_pids(endpoint)) == 1


def test_a_deploy_answers_within_five_seconds_of_the_api_call(
    celery_worker_process, admin, endpoint, iris_version
):
    # As in production, the worker has been up for a moment: its serving launcher is warm.
    assert wait_until(lambda: launcher.answers(Path(settings.LOCAL_RUNTIME_DIR)), timeout=60)
    Endpoint.objects.filter(pk=endpoint.pk).update(access_mode="open")

    started = time.monotonic()
    deployment_id = deploy_through_the_api(admin, endpoint, iris_version)
    while (url := Endpoint.objects.filter(pk=endpoint.pk).values_list("url", flat=True)[0]) == "":
        assert time.monotonic() - started < 30, Deployment.objects.get(pk=deployment_id).steps
        time.sleep(0.02)
    answer = predict(url)
    answered = time.monotonic() - started

    assert answer.json()["target"] == "setosa"
    steps = Deployment.objects.get(pk=deployment_id).steps
    breakdown = ", ".join(f"{step['step']} {step['seconds']:.2f}s" for step in steps)
    print(f"\nlocal deploy of iris, API call to a prediction: {answered:.2f}s ({breakdown})")
    assert answered < 5


def test_the_worker_carries_out_a_deploy_made_over_http_to_the_live_server(
    live_server, celery_worker_process, admin, endpoint, iris_version
):
    signed_in = httpx.post(
        f"{live_server.url}/api/v1/auth/token/",
        json={"username": admin.username, "password": "ada-password-1"},
        timeout=30,
    )
    assert signed_in.status_code == 200, signed_in.text
    token = signed_in.json()["token"]
    response = httpx.post(
        f"{live_server.url}/api/v1/endpoints/{endpoint.name}/deploy/",
        json={"model_version": iris_version.pk},
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    deployment = wait_for_deployment(response.json()["id"])
    assert deployment.status == DeploymentStatus.READY, deployment.error
    shown = httpx.get(
        f"{live_server.url}/api/v1/deployments/{deployment.pk}/",
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    )
    assert shown.json()["status"] == "ready"
    assert predict(shown.json()["resources"]["url"]).status_code == 401  # api_key mode, no key


def test_a_second_delivery_of_a_deploy_does_nothing(celery_worker_process, admin, endpoint, iris_version):
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    app.send_task(queue.DEPLOY, args=[deployment.pk])  # the same task, delivered twice

    done = wait_for_deployment(deployment.pk)
    assert done.status == DeploymentStatus.READY, done.error
    time.sleep(0.5)  # let the second delivery land and find nothing to claim
    assert deployment_run(deployment_id=deployment.pk) == DeploymentStatus.READY  # and once more here

    done.refresh_from_db()
    assert done.attempts == 1
    assert [step["step"] for step in done.steps].count("start") == 1
    assert len(serving_pids(endpoint)) == 1
    endpoint.refresh_from_db()
    assert predict(endpoint.url).status_code == 401


def test_a_worker_killed_mid_deploy_is_resumed_by_the_relay(
    celery_worker_process, admin, endpoint, iris_version
):
    celery_worker_process.kill()
    celery_worker_process.start(DEPLOY_CLAIM_SECONDS="3")
    Endpoint.objects.filter(pk=endpoint.pk).update(access_mode="open")
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)

    def start_done():
        steps = Deployment.objects.get(pk=deployment.pk).steps
        return any(step["step"] == "start" and step["state"] == "done" for step in steps)

    assert wait_until(start_done, timeout=30), celery_worker_process.log_text()
    celery_worker_process.kill()  # SIGKILL, worker and pool, mid-deploy
    [started_pid] = serving_pids(endpoint)  # the serving process outlives the worker
    stuck = Deployment.objects.get(pk=deployment.pk)
    assert stuck.status == DeploymentStatus.RUNNING

    celery_worker_process.start(DEPLOY_CLAIM_SECONDS="3")
    wait_until(lambda: Deployment.objects.get(pk=deployment.pk).claimed_until < _now(), timeout=10)
    wait_until(lambda: OwedTask.objects.get(task=queue.DEPLOY).due_at < _now(), timeout=10)
    app.send_task(queue.RELAY)  # what beat sends every few seconds
    done = wait_for_deployment(deployment.pk, timeout=60)

    assert done.status == DeploymentStatus.READY, (done.error, celery_worker_process.log_text())
    assert done.attempts == 2
    assert serving_pids(endpoint) == [started_pid]  # found and reused, not started twice
    endpoint.refresh_from_db()
    assert predict(endpoint.url).json()["target"] == "setosa"


def test_reconcile_starts_a_live_endpoint_again_after_a_restart(
    celery_worker_process, admin, endpoint, iris_version
):
    Endpoint.objects.filter(pk=endpoint.pk).update(access_mode="open")
    deployment = wait_for_deployment(
        deployment_request(user=admin, endpoint=endpoint, model_version=iris_version).pk
    )
    assert deployment.status == DeploymentStatus.READY, deployment.error
    endpoint.refresh_from_db()
    [pid] = serving_pids(endpoint)
    processes.terminate(pid, grace=1)  # the machine restarted
    with pytest.raises(httpx.ConnectError):
        predict(endpoint.url)

    app.send_task(queue.RECONCILE)
    assert wait_until(lambda: _answers(endpoint.url), timeout=30), celery_worker_process.log_text()
    assert predict(endpoint.url).json()["target"] == "setosa"
    assert len(serving_pids(endpoint)) == 1


def _answers(url: str) -> bool:
    try:
        return predict(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _now():
    from django.utils import timezone

    return timezone.now()
