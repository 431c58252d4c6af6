"""Audit events: one row per change, written in the same transaction as the change."""

from endpoints.models import AuditEvent


def audit_record(*, actor, action: str, target, details: dict | None = None) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        target_type=type(target).__name__,
        target_id=str(target.pk),
        target_repr=str(target)[:200],
        details=details or {},
    )
