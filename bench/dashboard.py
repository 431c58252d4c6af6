"""The dashboard's endpoint list with 1,000 endpoints and 10,000 deployments.

    .venv/bin/python -m bench.dashboard [--endpoints 1000] [--deployments 10000]

Runs in-process on a scratch PostgreSQL database (`DATABASE_URL`, default
postgres://postgres@127.0.0.1:5432/portal_bench, created and dropped by Django's test runner
machinery) and prints the median server time of the endpoint list next to two baselines from the
same run: the same page with 10 endpoints, and the login page (no queries).
"""

import argparse
import os
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--deployments", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=30)
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
    finally:
        teardown_databases(old, verbosity=0)


if __name__ == "__main__":
    sys.exit(main())
