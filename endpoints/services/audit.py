"""Audit events: one row per change, written in the same transaction as the change.

Changes that arrive through signals (team membership edited in Django admin, sign-ins) have no
actor argument; a caller that knows who acts says so with `audit_actor`:

    with audit_actor(request.user):
        form.save_m2m()
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from endpoints.models import AuditEvent

_actor: ContextVar = ContextVar("audit_actor", default=None)


@contextmanager
def audit_actor(user) -> Iterator[None]:
    """Name the actor of changes recorded from signals inside the block."""
    token = _actor.set(user)
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor():
    """The actor named by the innermost `audit_actor` block, or None."""
    return _actor.get()


def audit_record(
    *,
    actor,
    action: str,
    target,
    details: dict | None = None,
    target_type: str | None = None,
    target_repr: str | None = None,
) -> AuditEvent:
    """Record an event; `target` may be None (a sign-in for a user name that names no one)."""
    return AuditEvent.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        target_type=target_type or type(target).__name__,
        target_id=str(target.pk) if target is not None else "",
        target_repr=(target_repr if target_repr is not None else str(target))[:200],
        details=details or {},
    )
