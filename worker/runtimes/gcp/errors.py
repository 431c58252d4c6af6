"""Google's exceptions in the runtime's two words: PermanentError or TransientError.

Only what can pass on a later try is transient: unavailable, deadline exceeded, internal, unknown,
a rate limit (429, or Compute's 403 rateLimitExceeded; retried no sooner than
GCP_RATE_LIMIT_WAIT_SECONDS), a dropped connection over REST,
the optimistic-locking conflicts (aborted, 412) whose cure is to re-read, and a new service account
that Google does not see everywhere yet. Everything else
(invalid argument, permission denied, not found, a daily quota, an API not enabled: named, with the
command that enables it) is permanent and keeps Google's message, so the admin reads what Google said.
"""

from __future__ import annotations

import re
from typing import TypeGuard

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from worker.runtimes.base import PermanentError, RuntimeFailure, TransientError

#: Errors a retry of the same call may cure.
RETRYABLE = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.Unknown,
    gexc.GatewayTimeout,
    requests.ConnectionError,
    requests.Timeout,
    auth_exc.TransportError,
)
#: Optimistic-locking conflicts: re-read, recompute, write again.
STALE = (gexc.Aborted, gexc.PreconditionFailed)


def is_daily_quota(exc: gexc.GoogleAPICallError) -> bool:
    """A quota that resets tomorrow: retrying today will not help."""
    limit = str((exc.metadata or {}).get("quota_limit", "")) if hasattr(exc, "metadata") else ""
    text = f"{limit} {exc.message} {exc.reason or ''}".lower()
    reasons = {str(error.get("reason", "")).lower() for error in exc.errors if isinstance(error, dict)}
    return "perday" in text.replace(" ", "") or "per day" in text or "dailylimitexceeded" in reasons


#: Compute (and other REST APIs of its age) answer a rate limit with 403 and one of these reasons.
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})


def _reasons(exc: gexc.GoogleAPICallError) -> set[str]:
    return {str(error.get("reason", "")) for error in exc.errors if isinstance(error, dict)}


def is_rate_limit(exc: BaseException) -> TypeGuard[gexc.Forbidden]:
    """A 403 that only says "too fast": it passes once the rate drops."""
    return isinstance(exc, gexc.Forbidden) and bool(_reasons(exc) & RATE_LIMIT_REASONS)


def is_act_as_denied(exc: BaseException | None) -> bool:
    """Cloud Run's refusal to run as an account the caller may not use, or that it does not see
    yet: "Permission 'iam.serviceaccounts.actAs' denied on service account ... (or it may not exist)"."""
    return (
        isinstance(exc, gexc.PermissionDenied) and "iam.serviceaccounts.actas" in (exc.message or "").lower()
    )


def disabled_service(exc: gexc.GoogleAPICallError) -> str | None:
    """The API a SERVICE_DISABLED refusal names ("" when it names none), or None for other errors."""
    if exc.reason == "SERVICE_DISABLED":
        return str((exc.metadata or {}).get("service", ""))
    if "accessNotConfigured" in _reasons(exc):  # the older REST form of the same refusal
        found = re.search(r"\b([a-z0-9-]+\.googleapis\.com)\b", exc.message or "")
        return found.group(1) if found else ""
    return None


def service_disabled_message(exc: gexc.GoogleAPICallError, service: str) -> str:
    """What to do about a disabled API: its name and the command that enables it."""
    consumer = str((exc.metadata or {}).get("consumer", "")).removeprefix("projects/")
    project = f" --project={consumer}" if consumer else ""
    if not service:
        return f"a Google API this call needs is not enabled in the project: {_message(exc)}"
    return (
        f"the {service} API is not enabled in the project (enable it: gcloud services enable {service}"
        f"{project}; python manage.py gcp_doctor checks every API the runtime needs). Google said: "
        f"{_message(exc)}"
    )


def retry_after(exc: gexc.GoogleAPICallError, floor: float) -> float:
    """The wait Google asked for (RetryInfo), never less than `floor`."""
    for detail in exc.details or ():
        delay = getattr(detail, "retry_delay", None)
        if delay is not None and (delay.seconds or delay.nanos):
            return max(floor, delay.seconds + delay.nanos / 1e9)
    return floor


def translate(exc: BaseException, what: str, *, rate_limit_wait: float = 30.0) -> RuntimeFailure:
    """The runtime error for a Google exception raised while doing `what`."""
    if isinstance(exc, RuntimeFailure):
        return exc
    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        return translate(exc.cause, what, rate_limit_wait=rate_limit_wait)
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return PermanentError(
            f"{what}: no Google credentials (Application Default Credentials): {exc}. "
            "Run the worker with a service account, or `gcloud auth application-default login`."
        )
    if isinstance(exc, gexc.GoogleAPICallError) and (service := disabled_service(exc)) is not None:
        return PermanentError(f"{what}: {service_disabled_message(exc, service)}")
    if isinstance(exc, gexc.GoogleAPICallError) and (
        isinstance(exc, gexc.TooManyRequests) or is_rate_limit(exc)
    ):
        if is_daily_quota(exc):
            return PermanentError(f"{what}: {_message(exc)} (a daily quota: try again tomorrow or raise it)")
        return TransientError(f"{what}: {_message(exc)}", retry_after=retry_after(exc, rate_limit_wait))
    if isinstance(exc, RETRYABLE + STALE):
        return TransientError(f"{what}: {_message(exc)}")
    if isinstance(exc, gexc.InvalidArgument | gexc.BadRequest | gexc.NotFound) and _unseen_account(exc):
        # A service account made moments ago is not visible to every Google API at once: IAM
        # policies and Cloud Run refuse it for a few seconds. Try again shortly; a misnamed account
        # still fails, with Google's message, once the task's retries are spent.
        return TransientError(f"{what}: {_message(exc)}", retry_after=ACCOUNT_PROPAGATION_SECONDS)
    if isinstance(exc, gexc.GoogleAPICallError):
        return PermanentError(f"{what}: {_message(exc)}")
    if isinstance(exc, requests.RequestException):
        return TransientError(f"{what}: {exc}")
    raise exc


ACCOUNT_PROPAGATION_SECONDS = 5.0
_UNSEEN_ACCOUNT = re.compile(r"service account .* does not exist", re.IGNORECASE)


def _unseen_account(exc: gexc.GoogleAPICallError) -> bool:
    return bool(_UNSEEN_ACCOUNT.search(_message(exc)))


def _message(exc: BaseException) -> str:
    if isinstance(exc, gexc.GoogleAPICallError):
        status = exc.grpc_status_code.name if exc.grpc_status_code is not None else f"HTTP {exc.code}"
        return f"{exc.message} ({status})"
    return str(exc)
