"""Sign-in protection shared by the dashboard login, Django admin's login and the token endpoint.

Two layers, both counted in the default cache that every web worker shares:

- a rate (SIGN_IN_RATE) per client address and per user name, on every attempt: DRF throttles,
  used as the token view's `throttle_classes` and by `sign_in_throttled` around the login views;
- a lockout after LOCKOUT_FAILURES failures for one user name or from one address, for
  LOCKOUT_MINUTES (django-axes); while it lasts even the right password is refused, and
  `lockout_response` says so: JSON in the API's error shape under /api/, a page elsewhere.

The client address is `endpoints.client_address.client_address` in every layer.
"""

import hashlib
import math
from collections.abc import Mapping
from functools import wraps

from axes.helpers import get_lockout_message
from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from rest_framework.throttling import SimpleRateThrottle

from endpoints.client_address import client_address

THROTTLED = "Too many sign-in attempts from this address or for this user name."
LOCKED_OUT_CODE = "locked_out"


def posted_username(request) -> str:
    """The user name a sign-in attempt names ("" when none), from a Django or a DRF request."""
    data = getattr(request, "data", None)
    if data is None:
        data = request.POST
    value = data.get("username") if isinstance(data, Mapping) else None
    return value.strip().lower() if isinstance(value, str) else ""


class _SignInThrottle(SimpleRateThrottle):
    def get_rate(self) -> str:
        # Read at each request, not at import, so the setting can change under tests.
        return settings.SIGN_IN_RATE


class SignInAddressThrottle(_SignInThrottle):
    """Attempts from one client address."""

    scope = "sign_in_address"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}


class SignInUsernameThrottle(_SignInThrottle):
    """Attempts naming one user name, from any address."""

    scope = "sign_in_username"

    def get_cache_key(self, request, view) -> str | None:
        username = posted_username(request)
        if not username:
            return None
        ident = hashlib.sha256(username.encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


SIGN_IN_THROTTLES = (SignInAddressThrottle, SignInUsernameThrottle)


def _refused(request, message: str, status: int, retry_after: int | None = None):
    response = render(
        request,
        "registration/sign_in_refused.html",
        {"message": message, "login_url": request.get_full_path()},
        status=status,
    )
    if retry_after:
        response["Retry-After"] = str(retry_after)
    add_never_cache_headers(response)
    return response


def sign_in_throttled(view):
    """Wrap a login view (the dashboard's, Django admin's) in the sign-in throttles."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method == "POST":
            for throttle in (throttle_class() for throttle_class in SIGN_IN_THROTTLES):
                if not throttle.allow_request(request, None):
                    wait = math.ceil(throttle.wait() or 1)
                    return _refused(request, f"{THROTTLED} Try again in {wait} seconds.", 429, wait)
        return view(request, *args, **kwargs)

    return wrapper


def lockout_response(request, original_response=None, credentials=None):
    """What django-axes answers while a user name or address is locked out (AXES_LOCKOUT_CALLABLE)."""
    message = str(get_lockout_message())
    retry_after = int(settings.AXES_COOLOFF_TIME.total_seconds())
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": message, "field": None, "code": LOCKED_OUT_CODE}, status=429)
        response["Retry-After"] = str(retry_after)
        add_never_cache_headers(response)
        return response
    return _refused(request, message, 429, retry_after)
