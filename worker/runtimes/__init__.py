"""Runtimes: where deployed model versions run. `get_runtime()` returns the configured one.

RUNTIME names one of RUNTIMES or gives the dotted path of a `Runtime` subclass, as Django's
EMAIL_BACKEND does: `RUNTIME=myproject.runtimes.Nomad`.
"""

from functools import cache

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from worker.runtimes.base import PermanentError, Runtime, TransientError

RUNTIMES = {
    "local": "worker.runtimes.local.LocalRuntime",
    "gcp": "worker.runtimes.gcp.runtime.GcpRuntime",
    "memory": "worker.runtimes.memory.MemoryRuntime",
    "kubernetes": "worker.runtimes.kubernetes.runtime.KubernetesRuntime",
}

__all__ = ["PermanentError", "Runtime", "TransientError", "get_runtime"]


@cache
def get_runtime() -> Runtime:
    """The configured runtime, built once per process (after Celery forks, never before)."""
    name = settings.RUNTIME
    path = RUNTIMES.get(name, name)
    try:
        cls = import_string(path)
    except ImportError:
        raise ValueError(
            f"RUNTIME must be one of {sorted(RUNTIMES)} or the dotted path of a Runtime class, not {name!r}"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Runtime)):
        raise ValueError(f"RUNTIME={name!r} is not a subclass of worker.runtimes.base.Runtime")
    return cls()


@receiver(setting_changed)
def _rebuild_runtime(*, setting: str, **_kwargs) -> None:
    """A changed RUNTIME (or runtime setting) takes effect at the next `get_runtime()`."""
    if setting == "RUNTIME" or setting.startswith(("GCP_", "LOCAL_RUNTIME_", "KUBERNETES_")):
        get_runtime.cache_clear()
