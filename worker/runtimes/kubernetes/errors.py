"""The Kubernetes API's refusals in the runtime's two words: PermanentError or TransientError.

Transient: a conflict on a stale resourceVersion (someone else wrote the object between our read
and our write: read again), too many requests (429, after the wait it asks for), the API server busy or
failing (500, 502, 503, 504), and a connection that failed or timed out. Everything else (400 bad
request, 401/403 no permission, 404 where the object must exist, 409 AlreadyExists, 422 an object
the API server finds invalid) is permanent and keeps the API server's message and causes, so the
admin reads what Kubernetes said.
"""

from __future__ import annotations

import json

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from worker.runtimes.base import PermanentError, RuntimeFailure, TransientError

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


def status_of(exc: ApiException) -> dict:
    """The Status object the API server sent with a refusal ({} when the body is not one)."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def is_stale(exc: ApiException) -> bool:
    """409 Conflict on a write with an old resourceVersion (not 409 AlreadyExists)."""
    return exc.status == 409 and status_of(exc).get("reason") == "Conflict"


def retry_after(exc: ApiException) -> float | None:
    """The wait the API server asked for: its Retry-After header, or the Status's retryAfterSeconds."""
    header = exc.headers.get("Retry-After") if exc.headers else None
    if header and str(header).isdigit():
        return float(header)
    seconds = (status_of(exc).get("details") or {}).get("retryAfterSeconds")
    return float(seconds) if isinstance(seconds, int) and seconds > 0 else None


def describe(exc: ApiException) -> str:
    """The API server's own words: its message, each invalid field's cause, and the status."""
    status = status_of(exc)
    message = status.get("message") or exc.reason or "no message"
    causes = [
        f"{cause.get('field', '')}: {cause.get('message', '')}".strip(": ")
        for cause in (status.get("details") or {}).get("causes") or ()
        if isinstance(cause, dict)
    ]
    detail = f" ({'; '.join(causes)})" if causes and not all(cause in message for cause in causes) else ""
    reason = status.get("reason") or exc.reason or ""
    return f"{message}{detail} [HTTP {exc.status}{' ' + reason if reason else ''}]"


def translate(exc: BaseException, what: str) -> RuntimeFailure:
    """The runtime error for an exception raised while doing `what`."""
    if isinstance(exc, RuntimeFailure):
        return exc
    if isinstance(exc, ApiException):
        if exc.status in RETRYABLE_STATUS or is_stale(exc):
            return TransientError(f"{what}: {describe(exc)}", retry_after=retry_after(exc))
        if exc.status in (401, 403):
            return PermanentError(
                f"{what}: {describe(exc)}. The worker's Kubernetes credentials may not do this: grant its "
                "user or service account a Role on Deployments, ReplicaSets, Pods (and their log), "
                "Services, Secrets and HorizontalPodAutoscalers in the namespace."
            )
        return PermanentError(f"{what}: {describe(exc)}")
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return TransientError(f"{what}: the Kubernetes API server did not answer ({exc})")
    if isinstance(exc, ConfigException):
        return PermanentError(
            f"{what}: no usable Kubernetes credentials ({exc}). Set KUBERNETES_KUBECONFIG (and "
            "KUBERNETES_CONTEXT), or run the worker in the cluster with a service account."
        )
    raise exc
