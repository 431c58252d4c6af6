"""Bulk-create endpoints and deployments for the dashboard benchmark."""

import random

from django.contrib.auth import get_user_model
from django.test import Client

from endpoints.demo import IRIS_LABELS, NamedBytes, iris_skops_bytes


def admin_client() -> Client:
    user_model = get_user_model()
    admin = user_model.objects.filter(username="bench").first()
    if admin is None:
        admin = user_model.objects.create_user("bench", password="bench-password", is_staff=True)
    client = Client()
    client.force_login(admin)
    return client


def populate(*, endpoints: int, deployments: int) -> None:
    """Grow the database to `endpoints` endpoints and `deployments` deployments in all."""
    from endpoints.models import Deployment, DeploymentStatus, Endpoint, MLModel
    from endpoints.sandbox import client as sandbox
    from endpoints.services.versions import ml_model_create, model_version_register

    admin = get_user_model().objects.get(username="bench")
    ml_model = MLModel.objects.filter(name="iris").first() or ml_model_create(user=admin, name="iris")
    versions = list(ml_model.versions.all())
    if not versions:
        data = iris_skops_bytes()
        versions = [
            model_version_register(
                user=admin, ml_model=ml_model, upload=NamedBytes(data, "iris.skops"), label_map=IRIS_LABELS
            )
            for _ in range(3)
        ]
        sandbox.stop()  # an idle upload sandbox server would only stand beside the measurement
    have = Endpoint.objects.count()
    Endpoint.objects.bulk_create(
        Endpoint(name=f"endpoint-{index:05d}", created_by=admin, url=f"http://127.0.0.1:{18100 + index}")
        for index in range(have, endpoints)
    )
    rows = list(Endpoint.objects.order_by("id"))
    rng = random.Random(7)
    statuses = [DeploymentStatus.SUPERSEDED] * 6 + [DeploymentStatus.FAILED] * 2 + [DeploymentStatus.READY]
    todo = deployments - Deployment.objects.count()
    Deployment.objects.bulk_create(
        Deployment(
            endpoint=rows[index % len(rows)],
            model_version=rng.choice(versions),
            status=rng.choice(statuses),
            requested_by=admin,
            steps=[{"step": "start", "title": "Start", "state": "done", "seconds": 0.4, "message": "ok"}],
            resources={"url": rows[index % len(rows)].url},
        )
        for index in range(max(todo, 0))
    )
    for endpoint in rows:
        live = endpoint.deployments.filter(status=DeploymentStatus.READY).first()
        if live and endpoint.live_deployment_id != live.pk:
            Endpoint.objects.filter(pk=endpoint.pk).update(live_deployment=live)
