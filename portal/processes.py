"""The long-running processes of the product, as argv lists.

`manage.py up` runs these on one machine; docker-compose.yml runs the same commands, one per
container (a test keeps the two in step).
"""

import os


def web(bind: str) -> list[str]:
    workers = os.environ.get("WEB_WORKERS", "2")
    return [
        "gunicorn",
        "portal.wsgi:application",
        "--bind",
        bind,
        "--workers",
        workers,
        "--threads",
        "4",
        "--access-logfile",
        "-",
    ]


def worker() -> list[str]:
    concurrency = os.environ.get("WORKER_CONCURRENCY", "2")
    return [
        "celery",
        "-A",
        "portal",
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        concurrency,
        "-Q",
        "portal",
    ]


def beat() -> list[str]:
    return ["celery", "-A", "portal", "beat", "--loglevel", "INFO"]
