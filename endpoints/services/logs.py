"""Read an endpoint's live log: the log panel's one service call.

    page = endpoint_log_read(user=request.user, endpoint=endpoint, query=LogQuery(level="ERROR"))

The log says who called, from where, and why they were refused: admins only, like the page's other
operational parts. The runtime reads it (the revision's log file, or Cloud Logging); its failures
come back as a ServiceError whose message says what went wrong.
"""

from __future__ import annotations

import hashlib

from django.core.cache import cache

from endpoints.models import Endpoint
from endpoints.services.errors import ServiceError, require_admin
from worker.runtimes import get_runtime
from worker.runtimes.base import RuntimeFailure, TransientError
from worker.runtimes.logs import LogPage, LogQuery, LogQueryError


def endpoint_log_read(*, user, endpoint: Endpoint, query: LogQuery) -> LogPage:
    """The live revision's log as `query` filters it (newest entry last).

    A runtime whose log API has a read quota keeps pages for `log_cache_seconds`: several admins
    watching one endpoint then cost Google one read per query and interval, not one each.
    """
    require_admin(user)
    runtime = get_runtime()
    live = endpoint.live_deployment
    key = None
    if runtime.log_cache_seconds > 0:
        parts = (endpoint.name, live.pk if live else 0, query.level, query.text, query.after, query.limit)
        key = "logs:" + hashlib.sha256(repr(parts).encode()).hexdigest()
        cached = cache.get(key)
        if cached is not None:
            return cached
    try:
        page = runtime.read_log(endpoint.name, live.resources if live else None, query)
    except LogQueryError as exc:
        raise ServiceError(f"The log cannot be read that way: {exc}.", field="after") from None
    except TransientError as exc:
        raise ServiceError(f"The log could not be read just now: {exc}", code="unavailable") from None
    except RuntimeFailure as exc:
        raise ServiceError(f"The log cannot be read: {exc}", code="unavailable") from None
    if key is not None:
        cache.set(key, page, runtime.log_cache_seconds)
    return page


def log_poll_seconds() -> float:
    """How often the log panel asks for new entries on this runtime."""
    return get_runtime().log_poll_seconds
