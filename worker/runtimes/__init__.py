"""Runtimes: where deployed model versions run. `get_runtime()` returns the configured one."""

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from worker.runtimes.base import PermanentError, Runtime, TransientError

RUNTIMES = {
    "local": "worker.runtimes.local.LocalRuntime",
    "gcp": "worker.runtimes.gcp.runtime.GcpRuntime",
}

__all__ = ["PermanentError", "Runtime", "TransientError", "get_runtime"]


@cache
def get_runtime() -> Runtime:
    """Build the runtime once per process (after Celery forks, never before)."""
    try:
        path = RUNTIMES[settings.RUNTIME]
    except KeyError:
        raise ValueError(f"RUNTIME must be one of {sorted(RUNTIMES)}, not {settings.RUNTIME!r}") from None
    return import_string(path)()
