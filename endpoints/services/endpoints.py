"""Create and change endpoints."""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from endpoints.models import Endpoint
from endpoints.services.access import access_mode_note, access_sync_enqueue, refuse_while_deleting
from endpoints.services.audit import audit_record
from endpoints.services.errors import ServiceError, require_admin

SETTINGS_FIELDS = (
    "description",
    "region",
    "cpu",
    "memory",
    "min_instances",
    "max_instances",
    "concurrency",
    "timeout_seconds",
    "access_mode",
)


def _validate(endpoint: Endpoint, exclude=()) -> None:
    try:
        endpoint.full_clean(exclude=["created_by", "live_deployment", *exclude])
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise ServiceError(" ".join(messages), field=None if field == "__all__" else field) from None
    if endpoint.min_instances > endpoint.max_instances:
        raise ServiceError("Minimum instances cannot exceed maximum instances.", field="min_instances")


def endpoint_create(*, user, name: str, **fields) -> Endpoint:
    require_admin(user)
    unknown = set(fields) - set(SETTINGS_FIELDS)
    if unknown:
        raise ServiceError(f"Unknown endpoint settings: {sorted(unknown)}.")
    name = (name or "").strip()
    existing = Endpoint.objects.filter(name=name, deleted_at=None).first()
    if existing and existing.deletion_pending:
        raise ServiceError(
            f"The endpoint named {name!r} is being deleted; its name is free once the delete is done.",
            field="name",
        )
    if existing:
        raise ServiceError(f"An endpoint named {name!r} already exists.", field="name")
    endpoint = Endpoint(name=name, created_by=user, **fields)
    _validate(endpoint, exclude=["name"] if not name else ())
    if not name:
        raise ServiceError("Give the endpoint a name.", field="name")
    try:
        with transaction.atomic():
            endpoint.save()
            audit_record(actor=user, action="endpoint.create", target=endpoint, details=fields)
    except IntegrityError:
        raise ServiceError(f"An endpoint named {name!r} already exists.", field="name") from None
    return endpoint


def endpoint_update(*, user, endpoint: Endpoint, **fields) -> Endpoint:
    """Change an endpoint's settings; they take effect with its next deployment, except the access
    mode, which is pushed to the runtime at once, as allowlist and key changes are."""
    require_admin(user)
    unknown = set(fields) - set(SETTINGS_FIELDS)
    if unknown:
        raise ServiceError(f"These settings cannot be changed: {sorted(unknown)}.")
    changed = {key: value for key, value in fields.items() if getattr(endpoint, key) != value}
    if changed:
        refuse_while_deleting(endpoint)
    for key, value in changed.items():
        setattr(endpoint, key, value)
    _validate(endpoint)
    if not changed:
        return endpoint
    with transaction.atomic():
        endpoint.save(update_fields=list(changed))
        details = dict(changed)
        if "access_mode" in changed:
            access_sync_enqueue(endpoint)
            details["access_revision"] = endpoint.access_revision
            # Said at once (the worker says it again when it has applied what it can).
            endpoint.access_note = access_mode_note(endpoint, endpoint.access_mode)
            Endpoint.objects.filter(pk=endpoint.pk).update(access_note=endpoint.access_note)
            if endpoint.access_note:
                details["access_note"] = endpoint.access_note
        audit_record(actor=user, action="endpoint.update", target=endpoint, details=details)
    return endpoint
