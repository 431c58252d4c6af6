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


def populate_traffic(*, days: int = 7) -> int:
    """Give every endpoint `days` of per-minute traffic rollups ending now (and their hours), written
    minute by minute across endpoints as the scraper writes them; the rows written.

    One INSERT ... SELECT over generate_series: ten million rows take minutes, not hours.
    """
    import time

    from django.db import connection

    from endpoints.models import LATENCY_BUCKETS, TrafficRollup

    table = TrafficRollup._meta.db_table
    now = int(time.time()) // 60
    first = now - days * 1440 + 1
    buckets = ", ".join(f"latency_{index}" for index in range(LATENCY_BUCKETS))
    # Most requests between 1 and 5 ms, a few slower; a 5xx now and then.
    values = ", ".join(
        {2: "20 + m %% 7", 3: "25 + m %% 11", 4: "4", 5: "1", 6: "(m %% 13 = 0)::int"}.get(index, "0")
        for index in range(LATENCY_BUCKETS)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table}")
        cursor.execute(
            f"""
            INSERT INTO {table} (endpoint_id, revision, span, minute, ok, client_errors, server_errors,
                                 latency_sum, {buckets})
            SELECT e.id, e.name || '-d1', 1, m, 48 + m %% 7, m %% 3, (m %% 97 = 0)::int, 0.2, {values}
            FROM generate_series(%s, %s) AS m CROSS JOIN endpoints_endpoint AS e
            """,
            [first, now],
        )
        written = cursor.rowcount
        sums = ", ".join(
            f"SUM({column})" for column in ("ok", "client_errors", "server_errors", "latency_sum")
        )
        cursor.execute(
            f"""
            INSERT INTO {table} (endpoint_id, revision, span, minute, ok, client_errors, server_errors,
                                 latency_sum, {buckets})
            SELECT endpoint_id, revision, 60, minute / 60 * 60, {sums},
                   {", ".join(f"SUM(latency_{index})" for index in range(LATENCY_BUCKETS))}
            FROM {table} WHERE span = 1 GROUP BY endpoint_id, revision, minute / 60 * 60
            """
        )
        written += cursor.rowcount
        cursor.execute(f"VACUUM ANALYZE {table}")
    return written
