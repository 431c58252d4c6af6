"""Claims: a worker holds a row's work for DEPLOY_CLAIM_SECONDS and renews the hold while it works.

A claim says its worker is alive, so it can be short: a dead worker's claim lapses within
DEPLOY_CLAIM_SECONDS and another worker takes the work over, however long the work itself takes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections
from django.utils import timezone

log = logging.getLogger(__name__)


def claim_until() -> datetime:
    """When a claim taken or renewed now lapses."""
    return timezone.now() + timedelta(seconds=settings.DEPLOY_CLAIM_SECONDS)


@contextmanager
def renewed(renew: Callable[[], object], *, what: str) -> Iterator[None]:
    """Call `renew` every third of DEPLOY_CLAIM_SECONDS while the block runs, from a thread with
    its own database connection. A renewal that fails is logged: the work goes on, and at worst
    the claim lapses and another worker takes the work over."""
    stop = threading.Event()

    def keep_renewing() -> None:
        try:
            while not stop.wait(settings.DEPLOY_CLAIM_SECONDS / 3):
                renew()
        except Exception as exc:
            log.warning("could not renew the claim on %s: %s", what, exc)
        finally:
            connections.close_all()  # this thread's own connection

    renewer = threading.Thread(target=keep_renewing, name=f"claim {what}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join(timeout=5)
