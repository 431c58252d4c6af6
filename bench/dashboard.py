"""The dashboard's endpoint list with 1,000 endpoints and 10,000 deployments, and an endpoint's
page and traffic charts with a week of per-minute traffic for each of them.

    .venv/bin/python -m bench.dashboard [--endpoints 1000] [--deployments 10000] [--no-traffic]

Runs in-process on a scratch PostgreSQL database (`DATABASE_URL`, default
postgres://postgres@127.0.0.1:5432/portal_bench, created and dropped by Django's test runner
machinery) and prints the median server time of the endpoint list next to two baselines from the
same run: the same page with 10 endpoints, and the login page (no queries). With traffic (the
default) every endpoint then gets a week of per-minute rollups (10,080 rows each, ten million for
1,000 endpoints, written in a few minutes), and the endpoint page and its charts over the last
hour, day and week are timed against the same charts of an endpoint with no traffic.
"""

import argparse
import os
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--deployments", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-traffic", action="store_true", help="skip the endpoint page and its charts")
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal_bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import (
        setup_databases,
        setup_test_environment,
        teardown_databases,
    )

    settings.ALLOWED_HOSTS = ["testserver"]
    setup_test_environment()
    old = setup_databases(verbosity=0, interactive=False)
    try:
        from bench.fixtures import admin_client, populate
        from bench.stats import median_seconds, table

        client = admin_client()
        populate(endpoints=10, deployments=100)
        small = median_seconds(lambda: client.get("/"), repeat=args.repeat)
        populate(endpoints=args.endpoints, deployments=args.deployments)
        large = median_seconds(lambda: client.get("/"), repeat=args.repeat)
        queries = []
        with connection.execute_wrapper(
            lambda execute, sql, *rest: queries.append(sql) or execute(sql, *rest)
        ):
            response = client.get("/")
        assert response.status_code == 200, response.status_code
        client.logout()
        login = median_seconds(lambda: client.get("/accounts/login/"), repeat=args.repeat)
        table(
            [
                (f"endpoint list, {args.endpoints} endpoints, {args.deployments} deployments", large, None),
                ("endpoint list, 10 endpoints, 100 deployments (baseline)", small, large / small),
                ("login page, no queries (floor)", login, large / login),
            ]
        )
        print(f"queries for the large list: {len(queries)}")
        if not args.no_traffic:
            traffic_figures(client, args)
    finally:
        teardown_databases(old, verbosity=0)


def traffic_figures(client, args) -> None:
    """The endpoint page and its charts with a week of per-minute traffic for every endpoint."""
    import time

    from django.contrib.auth import get_user_model
    from django.db import connection

    from bench.fixtures import populate_traffic
    from bench.stats import median_seconds, table
    from endpoints.models import Endpoint

    client.force_login(get_user_model().objects.get(username="bench"))
    started = time.monotonic()
    rows = populate_traffic(days=7)
    print(f"traffic rollups written: {rows:,} in {time.monotonic() - started:.0f} s")
    quiet = Endpoint.objects.create(
        name="no-traffic", created_by=get_user_model().objects.get(username="bench")
    )
    name = Endpoint.objects.exclude(pk=quiet.pk).order_by("name")[Endpoint.objects.count() // 2].name
    htmx = {"HTTP_HX_REQUEST": "true"}

    def counted(path: str, **extra) -> int:
        queries: list[str] = []
        with connection.execute_wrapper(
            lambda execute, sql, *rest: queries.append(sql) or execute(sql, *rest)
        ):
            response = client.get(path, **extra)
        assert response.status_code == 200, (path, response.status_code)
        return len(queries)

    page = f"/endpoints/{name}/"
    empty = median_seconds(
        lambda: client.get(f"/endpoints/{quiet.name}/traffic/?window=week", **htmx), repeat=args.repeat
    )
    figures = [
        (
            "endpoint page (its charts load after it)",
            median_seconds(lambda: client.get(page), repeat=args.repeat),
            None,
        )
    ]
    queries = [counted(page)]
    for window in ("hour", "day", "week"):
        path = f"/endpoints/{name}/traffic/?window={window}"
        seconds = median_seconds(lambda path=path: client.get(path, **htmx), repeat=args.repeat)
        figures.append((f"charts, last {window}, a week of per-minute traffic", seconds, None))
        queries.append(counted(path, **htmx))
    figures.append(("charts, last week, an endpoint with no traffic (baseline)", empty, None))
    table(figures)
    print(f"queries: endpoint page {queries[0]}, charts (hour, day, week) {queries[1:]}")


if __name__ == "__main__":
    sys.exit(main())
