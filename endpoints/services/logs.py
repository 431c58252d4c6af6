"""Read an endpoint's live log: the log panel's one service call.

    page = endpoint_log_read(user=request.user, endpoint=endpoint, query=LogQuery(level="ERROR"))

The log says who called, from where, and why they were refused: admins only, like the page's other
operational parts. The runtime reads it (the revision's log file, or Cloud Logging); its failures
come back as a ServiceError whose message says what went wrong.
"""

from __future__ import annotations

from endpoints.models import Endpoint
from endpoints.services.errors import ServiceError, require_admin
from worker.runtimes import get_runtime
from worker.runtimes.base import RuntimeFailure, TransientError
from worker.runtimes.logs import LogPage, LogQuery, LogQueryError


def endpoint_log_read(*, user, endpoint: Endpoint, query: LogQuery) -> LogPage:
    """The live revision's log as `query` filters it (newest entry last)."""
    require_admin(user)
    live = endpoint.live_deployment
    try:
        return get_runtime().read_log(endpoint.name, live.resources if live else None, query)
    except LogQueryError as exc:
        raise ServiceError(f"The log cannot be read that way: {exc}.", field="after") from None
    except TransientError as exc:
        raise ServiceError(f"The log could not be read just now: {exc}", code="unavailable") from None
    except RuntimeFailure as exc:
        raise ServiceError(f"The log cannot be read: {exc}", code="unavailable") from None
