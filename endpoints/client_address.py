"""The one rule for a request's client address, used by every sign-in throttle and lockout.

With TRUSTED_PROXY_COUNT = 0 (the default) the address is REMOTE_ADDR and X-Forwarded-For is
ignored, so a client cannot pick its own address. With N trusted proxies in front, each appends
the address it saw to X-Forwarded-For and the last one connects to us, so the client is the N-th
entry from the right; entries further left were written by the client and are never trusted.

    client_address(request)  # "203.0.113.7"
"""

import ipaddress

from django.conf import settings


def _address(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_address(request) -> str:
    """The address sign-in throttles and lockouts count against (a Django or DRF request)."""
    meta = request.META
    remote = _address(meta.get("REMOTE_ADDR", "")) or "unknown"
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    hops = [hop for hop in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if not hops:
        return remote
    # Fewer entries than proxies: the leftmost one is the furthest any proxy saw.
    return _address(hops[-min(proxies, len(hops))]) or remote
