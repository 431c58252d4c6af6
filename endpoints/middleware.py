"""End a signed-in session after SESSION_IDLE_SECONDS without a request from the person.

The dashboard polls some pages (a deploy in progress, a key being issued) with htmx; those
requests carry `X-Portal-Poll: 1` and do not count as activity, so a tab left open does not keep
a session alive. The last activity is written at most once every ACTIVITY_RESOLUTION seconds, so
a busy page does not write the session on every request.
"""

import time

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponse, JsonResponse

LAST_ACTIVITY = "portal_last_activity"
#: Seconds: how stale the recorded activity may get before it is written again.
ACTIVITY_RESOLUTION = 30


def record_log_in(sender, request, user, **kwargs) -> None:
    """Logging in is activity: the session starts its idle clock then (and the first page writes nothing)."""
    if request is not None and hasattr(request, "session"):
        request.session[LAST_ACTIVITY] = int(time.time())


class SessionIdleTimeoutMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and hasattr(request, "session"):
            now = int(time.time())
            last = request.session.get(LAST_ACTIVITY)
            if isinstance(last, int) and now - last > settings.SESSION_IDLE_SECONDS:
                logout(request)
                return self._signed_out(request)
            polling = request.headers.get("X-Portal-Poll") == "1"
            if not polling and (not isinstance(last, int) or now - last >= ACTIVITY_RESOLUTION):
                request.session[LAST_ACTIVITY] = now
        return self.get_response(request)

    @staticmethod
    def _signed_out(request):
        if request.path.startswith("/api/"):
            detail = "Your session ended after a period of inactivity; sign in again."
            return JsonResponse({"detail": detail, "field": None, "code": "not_authenticated"}, status=401)
        to_login = redirect_to_login(request.get_full_path())
        if request.headers.get("HX-Request") == "true":
            # htmx would swap the log-in page into the fragment; send the whole page there instead.
            return HttpResponse(status=401, headers={"HX-Redirect": to_login["Location"]})
        return to_login
