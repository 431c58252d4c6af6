"""The playground: a prediction sent to an endpoint's live revision through the portal.

Who may: admins, and members of a team that holds a usable key for the endpoint (for an `open`
endpoint, which anyone may call, every signed-in user). The check is the portal's, made here.

How the portal gets past the endpoint's own access check, honestly:

- The runtime's own path first (`Runtime.portal_access`). On the local runtime every serving
  process makes a random "portal key" when it starts, keeps it in memory only, and gives it to
  whoever asks over its control socket, a unix socket only the portal's own user can open. A
  request carrying it passes the key and address checks. So the portal holds no long-lived secret:
  nothing is written to the database or a file, no team key is borrowed, the key dies with the
  process (every deploy makes a new one), and only someone who can already rewrite the access
  file could use it.
- A runtime that offers no such path (Google Cloud: the gateway takes only the keys it issued)
  is called at its public URL with the key the caller types into the form, used for that one call
  and never stored. An `open` endpoint needs none.

Every call through the portal's own path is audited (`endpoint.playground_call`): it is a call
made without a team key. The answer comes back as the serving process gave it (status, JSON),
with the round trip's time as the portal measured it.

    answer = playground_call(user=user, endpoint=endpoint, body={"sepal_length": 5.1, ...}, mode="both")
    answer.status, answer.document, answer.milliseconds
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlencode

from endpoints.models import AccessMode, ApiKey, Endpoint
from endpoints.services.audit import audit_record
from endpoints.services.errors import NotAllowed, ServiceError
from serving.validation import RETURN_MODES
from worker.runtimes import get_runtime
from worker.runtimes.base import PermanentError, TransientError

#: The longest a playground call waits for its answer (the endpoint's own timeout when shorter).
TIMEOUT_SECONDS = 30
MAX_ANSWER_BYTES = 1 << 20


@dataclass(frozen=True)
class PlaygroundAnswer:
    status: int
    document: object  # the JSON answer, or its text when it is not JSON
    milliseconds: float  # the round trip, as the portal measured it
    url: str  # what was called (without credentials)
    via: str  # how the call passed the access check, in words
    fields: dict = field(default_factory=dict)  # a 422's fields: path -> what is wrong

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def pretty(self) -> str:
        if isinstance(self.document, str):
            return self.document
        return json.dumps(self.document, indent=2, ensure_ascii=False)


def playground_refusal(user, endpoint: Endpoint) -> str:
    """Why `user` may not call `endpoint` from the playground ("" when they may)."""
    if not user.is_authenticated:
        return "Sign in first."
    if user.is_staff or endpoint.access_mode == AccessMode.OPEN:
        return ""
    if ApiKey.objects.usable().filter(endpoint=endpoint, team__members=user).exists():
        return ""
    return (
        "Only admins and members of a team holding a key for this endpoint can call it from the "
        "portal. Request a key first."
    )


def live_refusal(endpoint: Endpoint) -> str:
    """Why nothing can answer a playground call on `endpoint` now ("" when something can)."""
    if endpoint.deleted_at:
        return "This endpoint is deleted."
    if endpoint.live_deployment_id is None:
        return "Nothing is live on this endpoint: deploy a version first."
    if endpoint.stopped_at:
        return "This endpoint is stopped: start it to call it."
    return ""


def playground_call(
    *, user, endpoint: Endpoint, body: dict, mode: str | None = None, api_key: str = ""
) -> PlaygroundAnswer:
    """Send `body` to the endpoint's /predict as the playground does (see the module's docstring).

    `mode` is the `return` choice (label, probabilities, both; None for the default); `api_key`
    the caller's own key, for a runtime that gives the portal no path of its own.
    """
    refusal = playground_refusal(user, endpoint)
    if refusal:
        raise NotAllowed(refusal)
    refusal = live_refusal(endpoint)
    if refusal:
        raise ServiceError(refusal, code="conflict")
    if mode not in (None, "", *RETURN_MODES):
        raise ServiceError(f"Choose one of {', '.join(RETURN_MODES)}.", field="return")
    api_key = (api_key or "").strip()
    if api_key and not (api_key.isascii() and api_key.isprintable() and " " not in api_key):
        raise ServiceError("A key is one word of printable characters.", field="api_key")
    live = endpoint.live_deployment.resources if endpoint.live_deployment else None
    base, headers, via, own_path = "", {}, "", False
    if not api_key:
        try:
            access = get_runtime().portal_access(endpoint.name, live)
        except PermanentError as exc:
            if endpoint.checks_keys:
                raise ServiceError(
                    f"{exc} Give your team's key for this call (it is used once and not stored).",
                    field="api_key",
                ) from None
        except TransientError as exc:
            raise ServiceError(f"The serving process did not answer: {exc}", code="unavailable") from None
        else:
            base, headers, via, own_path = access.url, dict(access.headers), access.via, True
    if not base:
        base = endpoint.public_url.rstrip("/")
        if api_key:
            headers["x-api-key"] = api_key
            via = "your key"
        else:
            via = "no credential (the endpoint checks none)"
    if not base:
        raise ServiceError("The endpoint has no URL yet.", code="conflict")
    url = f"{base}/predict" + (f"?{urlencode({'return': mode})}" if mode else "")
    status, document, milliseconds = _post(
        url, body, headers, min(TIMEOUT_SECONDS, endpoint.timeout_seconds or TIMEOUT_SECONDS)
    )
    answer = PlaygroundAnswer(
        status=status,
        document=document,
        milliseconds=milliseconds,
        url=url,
        via=via,
        fields=_fields(document),
    )
    if own_path:
        audit_record(
            actor=user,
            action="endpoint.playground_call",
            target=endpoint,
            details={"status": answer.status, "return": mode or "", "rows": _rows(body)},
        )
    return answer


def _post(url: str, body: dict, headers: dict, timeout: float) -> tuple[int, object, float]:
    """POST `body` as JSON; (status, JSON or text, milliseconds). ServiceError when nothing answers."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"content-type": "application/json", "user-agent": "model-portal-playground", **headers},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    started = time.perf_counter()
    try:
        with opener.open(request, timeout=timeout) as response:
            status, raw = response.status, response.read(MAX_ANSWER_BYTES)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(MAX_ANSWER_BYTES)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServiceError(f"The endpoint did not answer ({reason}).", code="unavailable") from None
    milliseconds = (time.perf_counter() - started) * 1000
    try:
        document: object = json.loads(raw)
    except ValueError:
        document = raw.decode("utf-8", "replace")
    return status, document, milliseconds


def _fields(document) -> dict:
    if isinstance(document, dict) and isinstance(document.get("fields"), dict):
        return {str(key): str(value) for key, value in document["fields"].items()}
    return {}


def _rows(body: dict) -> int:
    rows = body.get("inputs") if isinstance(body, dict) else None
    return len(rows) if isinstance(rows, list) else 1
