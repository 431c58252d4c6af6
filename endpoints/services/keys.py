"""API keys: teams request them, admins decide, the worker issues them, each is shown once."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from endpoints.models import ApiKey, ApiKeyRequest, Endpoint, KeyRequestStatus, Team
from endpoints.sealing import key_hash, seal, unseal
from endpoints.services.access import access_sync_enqueue
from endpoints.services.audit import audit_record
from endpoints.services.errors import NotAllowed, ServiceError, require_admin
from portal.celery import app
from worker.runtimes.base import KeySpec


def key_request_create(
    *, user, team: Team | None, endpoint: Endpoint, reason: str, valid_days: int | None = None
) -> ApiKeyRequest:
    """A team member asks for a key to call `endpoint`."""
    if not user.is_authenticated:
        raise NotAllowed()
    if team is None:
        raise ServiceError("Choose the team the key is for.", field="team")
    if not user.is_staff and not team.members.filter(pk=user.pk).exists():
        raise NotAllowed(f"You are not a member of team {team.name!r}.")
    reason = (reason or "").strip()
    if len(reason) < 10:
        raise ServiceError("Say in a sentence what the key is for (at least 10 characters).", field="reason")
    valid_days = settings.API_KEY_DEFAULT_DAYS if valid_days in (None, "") else valid_days
    if not isinstance(valid_days, int) or not 1 <= valid_days <= settings.API_KEY_MAX_DAYS:
        raise ServiceError(
            f"A key can be valid for 1 to {settings.API_KEY_MAX_DAYS} days.", field="valid_days"
        )
    if endpoint.access_mode not in ("api_key", "both"):
        raise ServiceError(f"Endpoint {endpoint.name!r} does not use API keys.", field="endpoint")
    with transaction.atomic():
        request = ApiKeyRequest.objects.create(
            team=team, endpoint=endpoint, reason=reason, valid_days=valid_days, requested_by=user
        )
        audit_record(
            actor=user,
            action="key_request.create",
            target=request,
            details={"endpoint": endpoint.name, "team": team.name},
        )
    return request


def _decide(*, user, request: ApiKeyRequest, status: str, note: str) -> ApiKeyRequest:
    require_admin(user)
    now = timezone.now()
    with transaction.atomic():
        updated = ApiKeyRequest.objects.filter(pk=request.pk, status=KeyRequestStatus.PENDING).update(
            status=status, decided_by=user, decided_at=now, decision_note=note
        )
        if not updated:
            current = ApiKeyRequest.objects.get(pk=request.pk)
            raise ServiceError(
                f"This request was already decided ({current.get_status_display().lower()}).", code="conflict"
            )
        request.refresh_from_db()
        audit_record(
            actor=user,
            action=f"key_request.{'approve' if status == KeyRequestStatus.APPROVED else 'reject'}",
            target=request,
            details={"note": note},
        )
    return request


def key_request_approve(*, user, request: ApiKeyRequest, note: str = "") -> ApiKeyRequest:
    """Approve a pending request; the worker then issues the key."""
    request = _decide(user=user, request=request, status=KeyRequestStatus.APPROVED, note=note)
    request_id = request.pk
    transaction.on_commit(lambda: app.send_task("worker.issue_key", args=[request_id]))
    return request


def key_request_reject(*, user, request: ApiKeyRequest, note: str = "") -> ApiKeyRequest:
    return _decide(user=user, request=request, status=KeyRequestStatus.REJECTED, note=note)


def key_request_issue(*, request_id: int) -> ApiKeyRequest:
    """Issue the key for an approved request (in the worker); safe to run twice."""
    from worker.runtimes import get_runtime

    request = ApiKeyRequest.objects.select_related("endpoint", "team").get(pk=request_id)
    if request.status != KeyRequestStatus.APPROVED:
        return request
    endpoint = request.endpoint
    issued = get_runtime().issue_key(
        KeySpec(
            endpoint=endpoint.name,
            key_id=f"r{request.pk}",
            display_name=f"{request.team.name} for {endpoint.name} (request {request.pk})",
            cidrs=tuple(endpoint.allowlist.values_list("cidr", flat=True))
            if endpoint.checks_addresses
            else (),
        )
    )
    now = timezone.now()
    with transaction.atomic():
        locked = ApiKeyRequest.objects.select_for_update().get(pk=request_id)
        if locked.status != KeyRequestStatus.APPROVED:
            return locked
        key = ApiKey.objects.create(
            endpoint=endpoint,
            team=request.team,
            request=locked,
            display_name=f"{request.team.name} key for {endpoint.name}",
            prefix=issued.secret[:12],
            key_hash=key_hash(issued.secret),
            cloud_name=issued.name,
            expires_at=now + timedelta(days=locked.valid_days),
        )
        locked.status = KeyRequestStatus.ISSUED
        locked.sealed_secret = seal(issued.secret)
        locked.save(update_fields=["status", "sealed_secret"])
        audit_record(
            actor=None,
            action="api_key.issue",
            target=key,
            details={"request": locked.pk, "prefix": key.prefix},
        )
        access_sync_enqueue(endpoint)
    return locked


def key_request_fail(*, request_id: int, error: str) -> None:
    ApiKeyRequest.objects.filter(pk=request_id, status=KeyRequestStatus.APPROVED).update(
        status=KeyRequestStatus.FAILED, error=error[:2000]
    )


def api_key_reveal(*, user, request: ApiKeyRequest) -> str:
    """Return the issued secret once, to a member of the requesting team, and forget it."""
    if not request.team.members.filter(pk=user.pk).exists():
        raise NotAllowed("Only a member of the requesting team can see this key.")
    if request.status != KeyRequestStatus.ISSUED:
        raise ServiceError("The key has not been issued yet.", code="conflict")
    with transaction.atomic():
        locked = ApiKeyRequest.objects.select_for_update().get(pk=request.pk)
        if not locked.sealed_secret:
            raise ServiceError("This key was already shown once and cannot be shown again.", code="gone")
        secret = unseal(locked.sealed_secret)
        locked.sealed_secret = ""
        locked.revealed_at = timezone.now()
        locked.save(update_fields=["sealed_secret", "revealed_at"])
        audit_record(actor=user, action="api_key.reveal", target=locked)
    request.sealed_secret, request.revealed_at = "", locked.revealed_at
    return secret


def api_key_revoke(*, user, key: ApiKey) -> ApiKey:
    require_admin(user)
    with transaction.atomic():
        updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=user
        )
        if not updated:
            raise ServiceError("This key is already revoked.", code="conflict")
        key.refresh_from_db()
        audit_record(actor=user, action="api_key.revoke", target=key, details={"prefix": key.prefix})
        key_id = key.pk
        transaction.on_commit(lambda: app.send_task("worker.revoke_key", args=[key_id]))
        access_sync_enqueue(key.endpoint)
    return key


def api_key_revoke_at_runtime(*, key_id: int) -> None:
    from worker.runtimes import get_runtime

    key = ApiKey.objects.select_related("endpoint").get(pk=key_id)
    if key.cloud_name:
        get_runtime().revoke_key(key.endpoint.name, key.cloud_name)
