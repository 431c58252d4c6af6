"""A local deploy of iris, from the REST API call to the endpoint answering with the new version.

    .venv/bin/python -m bench.deploy [--rounds 5]

Runs a real Celery worker on a scratch PostgreSQL database (DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/portal_bench) and Redis (CELERY_BROKER_URL, default
redis://127.0.0.1:6379/9). Each round POSTs /api/v1/endpoints/<name>/deploy/ with the other of two
iris versions and polls the endpoint's stable URL until /v1/model reports that version. The
baseline, measured in the same run, is a bare serving process started by hand until /readyz
answers: the part of a deploy no portal can avoid.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def wait_for(check, timeout: float = 60.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError("gave up waiting")


def answered_version(url: str) -> int | None:
    try:
        response = httpx.get(f"{url}/v1/model", timeout=1.0)
    except httpx.HTTPError:
        return None
    return response.json().get("version") if response.status_code == 200 else None


def serving_cold_start(version, workdir: Path) -> float:
    """Start `python -m serving` for the version by hand; seconds until /readyz answers 200."""
    from endpoints.services.deployments import model_spec_for
    from worker.runtimes.local.state import port_is_free

    port = next(p for p in range(18900, 18999) if port_is_free("127.0.0.1", p))
    spec = model_spec_for(version)
    env = {
        **os.environ,
        "PORT": str(port),
        "SERVING_HOST": "127.0.0.1",
        "SERVING_MODEL_URI": spec.artifact_path,
        "SERVING_MODEL_META": json.dumps(spec.meta()),
        "SERVING_WORKERS": "1",
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "serving"],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def ready():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready)
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal_bench")
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/9")
    os.environ["MEDIA_ROOT"] = str(scratch / "media")
    os.environ["LOCAL_RUNTIME_DIR"] = str(scratch / "runtime")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import logging

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_databases, setup_test_environment, teardown_databases

    from endpoints.demo import IRIS_LABELS, NamedBytes, iris_skops_bytes
    from endpoints.models import Deployment
    from endpoints.sandbox import client as sandbox
    from endpoints.services.endpoints import endpoint_create
    from endpoints.services.versions import ml_model_create, model_version_register
    from tests.fixtures.worker import CeleryWorker, database_url_for_subprocess, stop_serving_processes

    settings.ALLOWED_HOSTS = ["testserver"]
    logging.getLogger("httpx").setLevel(logging.WARNING)
    setup_test_environment()
    old = setup_databases(verbosity=0, interactive=False)
    worker = None
    try:
        admin = get_user_model().objects.create_user("bench", password="bench-password", is_staff=True)
        ml_model = ml_model_create(user=admin, name="iris")
        data = iris_skops_bytes()
        versions = [
            model_version_register(
                user=admin, ml_model=ml_model, upload=NamedBytes(data, "iris.skops"), label_map=IRIS_LABELS
            )
            for _ in range(2)
        ]
        sandbox.stop()  # an idle upload sandbox server would only stand beside the measurement
        endpoint_create(user=admin, name="bench-iris", access_mode="open")
        env = {
            **os.environ,
            "DATABASE_URL": database_url_for_subprocess(),
            "SECRET_KEY": settings.SECRET_KEY,
            "KEY_SEALING_KEY": ",".join(settings.KEY_SEALING_KEYS),
            "PYTHONUNBUFFERED": "1",
        }
        worker = CeleryWorker(env, scratch / "worker.log", Path(settings.BASE_DIR)).start()
        client = Client()
        client.force_login(admin)

        baseline = [serving_cold_start(versions[0], Path(settings.BASE_DIR)) for _ in range(3)]
        deploys, ready_in_db = [], []
        for round_ in range(args.rounds + 1):
            version = versions[round_ % 2]
            started = time.perf_counter()
            response = client.post(
                "/api/v1/endpoints/bench-iris/deploy/",
                {"model_version": version.pk},
                content_type="application/json",
            )
            assert response.status_code == 202, response.content
            deployment_id = response.json()["id"]
            url = wait_for(
                lambda deployment_id=deployment_id: (
                    Deployment.objects.filter(pk=deployment_id, status="ready")
                    .values_list("resources__url", flat=True)
                    .first()
                ),
                interval=0.01,
            )
            ready_in_db.append(time.perf_counter() - started)
            wait_for(lambda url=url, n=version.number: answered_version(url) == n, interval=0.01)
            elapsed = time.perf_counter() - started
            if round_ == 0:
                first = elapsed
            else:
                deploys.append(elapsed)
        base = statistics.median(baseline)
        redeploy = statistics.median(deploys)
        print(f"serving cold start by hand (baseline), median of {len(baseline)}:  {base:6.2f} s")
        print(
            f"first deploy, API call -> answering:                     {first:6.2f} s  "
            f"{first / base:5.2f}x baseline"
        )
        print(
            f"redeploy, API call -> answering, median of {len(deploys)}:          {redeploy:6.2f} s  "
            f"{redeploy / base:5.2f}x baseline"
        )
        print(
            f"redeploy, API call -> status ready in the database, median: "
            f"{statistics.median(ready_in_db[1:]):6.2f} s"
        )
    finally:
        if worker is not None:
            worker.stop()
        stop_serving_processes(scratch / "runtime")
        teardown_databases(old, verbosity=0)


if __name__ == "__main__":
    sys.exit(main())
