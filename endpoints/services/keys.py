"""API keys: teams request them, admins decide, the worker issues them, each is shown once.

An issued key's secret is kept sealed (`endpoints.sealing`) only until it is revealed, the key is
revoked, or KEY_REVEAL_WINDOW_HOURS pass: then it is erased. A key nobody revealed in that window
"expired unseen": it is revoked too, and an admin may re-issue the request (a new key, revealed
once like any other).

An admin may undo a revoke within KEY_RESTORE_DAYS, and rotate a key: the team gets a new key through
the same issue-and-reveal path as a request, and the old one is revoked after an overlap. Beat's
`worker.expire_keys` revokes keys past their expiry (Google keys never expire by themselves) and
expires keys left unseen.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from endpoints.models import (
    KEY_RESTORE_DAYS,
    ApiKey,
    ApiKeyRequest,
    Endpoint,
    KeyRequestStatus,
    LoadTest,
    Team,
)
from endpoints.sealing import key_hash, seal, unseal
from endpoints.services.access import access_sync_enqueue, refuse_while_deleting
from endpoints.services.audit import audit_record
from endpoints.services.errors import NotAllowed, ServiceError, Unprocessable, refuse_all, require_admin
from endpoints.services.owed import owe
from portal import queue
from worker.runtimes import get_runtime
from worker.runtimes.base import IssuedKey, KeySpec, PermanentError

logger = logging.getLogger(__name__)

#: The longest overlap of a rotation, during which the old and the new key both work.
MAX_OVERLAP_HOURS = 24 * 30
DEFAULT_OVERLAP_HOURS = 24  # a rotation's overlap when none is given
OVERLAP_RANGE = f"The overlap can be 0 to {MAX_OVERLAP_HOURS} hours ({MAX_OVERLAP_HOURS // 24} days)."
#: The refusal of a team the user is not in, worded as for a team that does not exist: a member
#: learns nothing about teams they are not in (the API's and the dashboard's team fields say it too).
UNKNOWN_TEAM = "Choose one of your teams."
REASON_TOO_SHORT = "Say in a sentence what the key is for (at least 10 characters)."
#: A reason of at least 10 characters once the spaces around it are stripped (for the API's schema).
REASON_PATTERN = r"^\s*\S[\s\S]{8,}\S\s*$"


def key_request_problems(
    *, user, team: Team | None, endpoint: Endpoint | None, reason: str, valid_days: int | None = None
) -> list[ServiceError]:
    """Everything wrong with a key request, each naming its field, so a form can show them all at
    once; `None` for a team or endpoint the form could not read leaves its checks out."""
    problems: list[ServiceError] = []
    if team is None:
        problems.append(Unprocessable("Choose the team the key is for.", field="team"))
    elif not user.is_staff and not team.members.filter(pk=user.pk).exists():
        problems.append(Unprocessable(UNKNOWN_TEAM, field="team", code="does_not_exist"))
    if len((reason or "").strip()) < 10:
        problems.append(ServiceError(REASON_TOO_SHORT, field="reason"))
    valid_days = settings.API_KEY_DEFAULT_DAYS if valid_days in (None, "") else valid_days
    if not isinstance(valid_days, int) or not 1 <= valid_days <= settings.API_KEY_MAX_DAYS:
        problems.append(
            ServiceError(f"A key can be valid for 1 to {settings.API_KEY_MAX_DAYS} days.", field="valid_days")
        )
    if endpoint is not None and endpoint.access_mode not in ("api_key", "both"):
        problems.append(
            ServiceError(
                f"Endpoint {endpoint.name!r} does not use API keys.", field="endpoint", code="conflict"
            )
        )
    return problems


def default_team(user) -> Team | None:
    """The team a key request is for when it names none: the user's team, if they are in exactly one."""
    teams = list(Team.objects.filter(members=user)[:2]) if user.is_authenticated else []
    return teams[0] if len(teams) == 1 else None


def key_request_create(
    *, user, team: Team | None, endpoint: Endpoint, reason: str, valid_days: int | None = None
) -> ApiKeyRequest:
    """A team member asks for a key to call `endpoint` (for their one team when `team` is None)."""
    if not user.is_authenticated:
        raise NotAllowed()
    team = team or default_team(user)
    problems = key_request_problems(
        user=user, team=team, endpoint=endpoint, reason=reason, valid_days=valid_days
    )
    refuse_all(problems)
    assert team is not None
    reason = reason.strip()
    valid_days = settings.API_KEY_DEFAULT_DAYS if valid_days in (None, "") else valid_days
    refuse_while_deleting(endpoint)
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


def _issue_after_commit(request: ApiKeyRequest) -> None:
    """Owe the approved request's issue, in the transaction that approves it."""
    owe(queue.ISSUE_KEY, request.pk)


def _approved_request(*, user, team, endpoint, reason: str, valid_days, requested_by, note: str, now):
    """A request an admin's own action approves at once (a rotation, a re-issue)."""
    return ApiKeyRequest.objects.create(
        team=team,
        endpoint=endpoint,
        reason=reason,
        valid_days=valid_days,
        status=KeyRequestStatus.APPROVED,
        requested_by=requested_by,
        decided_by=user,
        decided_at=now,
        decision_note=note,
    )


def key_request_approve(*, user, request: ApiKeyRequest, note: str = "") -> ApiKeyRequest:
    """Approve a pending request; the worker then issues the key."""
    refuse_while_deleting(request.endpoint)
    with transaction.atomic():
        request = _decide(user=user, request=request, status=KeyRequestStatus.APPROVED, note=note)
        _issue_after_commit(request)
    return request


def key_request_reject(*, user, request: ApiKeyRequest, note: str = "") -> ApiKeyRequest:
    return _decide(user=user, request=request, status=KeyRequestStatus.REJECTED, note=note)


def _issue_at_runtime(endpoint: Endpoint, *, key_id: str, display_name: str) -> IssuedKey:
    """Have the runtime make a key for `endpoint`, bound to its allowlist where it checks addresses."""
    return get_runtime().issue_key(
        KeySpec(
            endpoint=endpoint.name,
            key_id=key_id,
            display_name=display_name,
            cidrs=tuple(endpoint.allowlist.values_list("cidr", flat=True))
            if endpoint.checks_addresses
            else (),
            check_addresses=endpoint.checks_addresses,
        )
    )


def key_request_issue(*, request_id: int) -> ApiKeyRequest:
    """Issue the key for an approved request (in the worker); safe to run twice."""
    request = ApiKeyRequest.objects.select_related("endpoint", "team").get(pk=request_id)
    if request.status != KeyRequestStatus.APPROVED:
        return request
    endpoint = request.endpoint
    issued = _issue_at_runtime(
        endpoint,
        key_id=f"r{request.pk}",
        display_name=f"{request.team.name} for {endpoint.name} (request {request.pk})",
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
        locked.issued_at = now
        locked.save(update_fields=["status", "sealed_secret", "issued_at"])
        audit_record(
            actor=None,
            action="api_key.issue",
            target=key,
            details={"request": locked.pk, "prefix": key.prefix},
        )
        access_sync_enqueue(endpoint)
    return locked


def key_request_fail(*, request_id: int, error: str) -> None:
    """Record that the approved request's key could not be issued."""
    with transaction.atomic():
        failed = ApiKeyRequest.objects.filter(pk=request_id, status=KeyRequestStatus.APPROVED).update(
            status=KeyRequestStatus.FAILED, error=error[:2000]
        )
        if failed:
            request = ApiKeyRequest.objects.get(pk=request_id)
            audit_record(
                actor=None, action="key_request.failed", target=request, details={"error": error[:1000]}
            )


def api_key_reveal(*, user, request: ApiKeyRequest) -> str:
    """Return the issued secret once, to a member of the requesting team, and forget it.

    Refused, with the reason, once the secret is gone: shown already, erased by a revoke, or past
    its reveal window (then the secret is erased here, if beat has not done it yet).
    """
    if not request.team.members.filter(pk=user.pk).exists():
        raise NotAllowed("Only a member of the requesting team can see this key.")
    now = timezone.now()
    with transaction.atomic():
        locked = (
            ApiKeyRequest.objects.select_for_update(of=("self",)).select_related("api_key").get(pk=request.pk)
        )
        if _reveal_window_passed(locked, now):
            _expire_unseen(locked, now=now)
        else:
            _refuse_reveal(locked)
            try:
                secret = unseal(locked.sealed_secret)
            except ValueError:
                logger.error(
                    "Key request %s: the sealed secret does not open with KEY_SEALING_KEY", locked.pk
                )
                raise ServiceError(
                    "The key cannot be opened with the portal's sealing key (KEY_SEALING_KEY changed without "
                    "keeping the old key). It is kept, sealed, for an admin to restore the old sealing key; "
                    "past its reveal window it expires unseen and can be re-issued.",
                    code="conflict",
                ) from None
            locked.sealed_secret = ""
            locked.revealed_at = now
            locked.save(update_fields=["sealed_secret", "revealed_at"])
            audit_record(actor=user, action="api_key.reveal", target=locked)
            request.sealed_secret, request.revealed_at = "", now
            return secret
    # The erasure is committed; now say why there is nothing to show.
    request.status, request.sealed_secret = locked.status, ""
    raise ServiceError(_expired_unseen_message(locked), code="expired_unseen")


def _reveal_window_passed(request: ApiKeyRequest, now) -> bool:
    return (
        request.status == KeyRequestStatus.ISSUED
        and bool(request.sealed_secret)
        and request.reveal_until is not None
        and now >= request.reveal_until
    )


def _expired_unseen_message(request: ApiKeyRequest) -> str:
    message = (
        f"This key expired unseen: nobody revealed it within {settings.KEY_REVEAL_WINDOW_HOURS:g} hours of "
        "its issue, so the portal erased it and revoked the key."
    )
    if request.reissued_as_id:
        return f"{message} It was re-issued as request {request.reissued_as_id}."
    return f"{message} An admin can re-issue it."


def _refuse_reveal(request: ApiKeyRequest) -> None:
    """Raise the reason the request's key cannot be revealed now, if there is one."""
    status = request.status
    if status in (KeyRequestStatus.PENDING, KeyRequestStatus.APPROVED):
        raise ServiceError("The key has not been issued yet.", code="conflict")
    if status == KeyRequestStatus.REJECTED:
        raise ServiceError("This request was rejected: there is no key to show.", code="conflict")
    if status == KeyRequestStatus.FAILED:
        raise ServiceError("The key could not be issued: there is no key to show.", code="conflict")
    if status == KeyRequestStatus.EXPIRED_UNSEEN:
        raise ServiceError(_expired_unseen_message(request), code="expired_unseen")
    if request.revealed_at:
        raise ServiceError("This key was already shown once and cannot be shown again.", code="gone")
    key = getattr(request, "api_key", None)
    if key is not None and key.revoked_at:
        raise ServiceError(
            f"This key was revoked on {key.revoked_at:%Y-%m-%d %H:%M} UTC before it was shown, and a "
            "revoked key is never revealed; its secret is erased. Request a new key.",
            code="revoked",
        )
    if not request.sealed_secret:
        raise ServiceError("This key's secret is erased and cannot be shown.", code="gone")


def _erase_secret(key: ApiKey) -> bool:
    """Erase the sealed secret of `key`'s request, if it still waits for its reveal."""
    if key.request_id is None:
        return False
    return bool(
        ApiKeyRequest.objects.filter(pk=key.request_id).exclude(sealed_secret="").update(sealed_secret="")
    )


def _revoke_as_system(key: ApiKey, *, now, reason: str, action: str = "api_key.expire") -> bool:
    """Revoke `key` as the system (audited as `action`), unless it is revoked already."""
    with transaction.atomic():
        if not ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
            revoked_at=now, revoked_by=None
        ):
            return False  # revoked meanwhile, by an admin or another run
        _erase_secret(key)
        audit_record(
            actor=None,
            action=action,
            target=key,
            details={"prefix": key.prefix, "reason": reason},
        )
        owe(queue.REVOKE_KEY, key.pk)
        access_sync_enqueue(key.endpoint)
    return True


def _expire_unseen(request: ApiKeyRequest, *, now) -> int | None:
    """Erase the secret of a request left unseen past its window, and revoke its key.

    `request` is locked by the caller. Returns the id of the key revoked, if one was.
    """
    request.status = KeyRequestStatus.EXPIRED_UNSEEN
    request.sealed_secret = ""
    request.save(update_fields=["status", "sealed_secret"])
    audit_record(
        actor=None,
        action="key_request.expire_unseen",
        target=request,
        details={
            "issued_at": request.issued_at.isoformat() if request.issued_at else None,
            "window_hours": settings.KEY_REVEAL_WINDOW_HOURS,
        },
    )
    key = ApiKey.objects.filter(request=request).select_related("endpoint").first()
    if key is not None and _revoke_as_system(key, now=now, reason="unseen"):
        return key.pk
    return None


def key_request_reissue(*, user, request: ApiKeyRequest) -> ApiKeyRequest:
    """Issue a new key for a request whose key expired unseen (admins); returns the new request.

    The new request is approved at once and goes the usual way: the worker issues the key, a
    member of the team reveals it once. The unseen key is revoked if it still was not.
    """
    require_admin(user)
    now = timezone.now()
    with transaction.atomic():
        locked = (
            ApiKeyRequest.objects.select_for_update(of=("self",))
            .select_related("team", "endpoint")
            .get(pk=request.pk)
        )
        if _reveal_window_passed(locked, now):
            _expire_unseen(locked, now=now)
        if locked.status != KeyRequestStatus.EXPIRED_UNSEEN:
            raise ServiceError(
                f"Only a request whose key expired unseen can be re-issued; this one is "
                f"{locked.get_status_display().lower()}.",
                code="conflict",
            )
        if locked.reissued_as_id:
            raise ServiceError(
                f"This request was already re-issued as request {locked.reissued_as_id}.", code="conflict"
            )
        endpoint = locked.endpoint
        if not endpoint.checks_keys:
            raise ServiceError(f"Endpoint {endpoint.name!r} no longer uses API keys.", code="conflict")
        old_key = ApiKey.objects.filter(request=locked).select_related("endpoint").first()
        if old_key is not None:
            _revoke_as_system(old_key, now=now, reason="unseen")
        new = _approved_request(
            user=user,
            team=locked.team,
            endpoint=endpoint,
            reason=locked.reason,
            valid_days=locked.valid_days,
            requested_by=locked.requested_by,
            note=f"re-issue of request {locked.pk}, whose key expired unseen",
            now=now,
        )
        locked.reissued_as = new
        locked.save(update_fields=["reissued_as"])
        # A rotation waiting on the unseen key now waits on the new one.
        ApiKey.objects.filter(replacement=locked).update(replacement=new)
        audit_record(
            actor=user,
            action="key_request.reissue",
            target=locked,
            details={"request": new.pk, "revoked_key": old_key.prefix if old_key else None},
        )
        _issue_after_commit(new)
    request.refresh_from_db()
    return new


def load_test_key_issue(*, test: LoadTest) -> str:
    """Issue the key load test `test` calls its endpoint with (in the worker), and put it in the
    endpoint's access policy; returns its secret, which is kept nowhere.

    The key has no team, and expires by itself shortly after the longest the test can run, so even
    a test whose worker died leaves no key working for long (`load_test_key_revoke` ends it sooner).
    """
    endpoint = test.endpoint
    issued = _issue_at_runtime(
        endpoint, key_id=f"t{test.pk}", display_name=f"Load test {test.pk} of {endpoint.name}"
    )
    lifetime = timedelta(seconds=test.duration_seconds + 2 * settings.LOAD_TEST_GRACE_SECONDS)
    with transaction.atomic():
        key = ApiKey.objects.create(
            endpoint=endpoint,
            team=None,
            display_name=f"Load test {test.pk}",
            prefix=issued.secret[:12],
            key_hash=key_hash(issued.secret),
            cloud_name=issued.name,
            expires_at=timezone.now() + lifetime,
        )
        LoadTest.objects.filter(pk=test.pk).update(api_key=key)
        test.api_key = key
        audit_record(
            actor=None,
            action="api_key.issue",
            target=key,
            details={"load_test": test.pk, "prefix": key.prefix},
        )
        access_sync_enqueue(endpoint)
    return issued.secret


def load_test_key_revoke(*, test: LoadTest) -> bool:
    """Revoke the key made for load test `test`, if it has one still working (audited, owed)."""
    key = ApiKey.objects.filter(load_test=test).select_related("endpoint").first()
    if key is None:
        return False
    return _revoke_as_system(
        key, now=timezone.now(), reason=f"load test {test.pk} ended", action="api_key.revoke"
    )


def api_key_revoke(*, user, key: ApiKey) -> ApiKey:
    require_admin(user)
    with transaction.atomic():
        updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=user
        )
        if not updated:
            raise ServiceError("This key is already revoked.", code="conflict")
        key.refresh_from_db()
        details: dict[str, object] = {"prefix": key.prefix}
        if _erase_secret(key):
            details["unrevealed_secret_erased"] = True
        audit_record(actor=user, action="api_key.revoke", target=key, details=details)
        owe(queue.REVOKE_KEY, key.pk)
        access_sync_enqueue(key.endpoint)
    return key


def api_key_revoke_at_runtime(*, key_id: int) -> None:
    """Revoke the key at the runtime (in the worker), unless it was restored since."""
    key = ApiKey.objects.select_related("endpoint").get(pk=key_id)
    if key.revoked_at is None:  # restored before this task ran: leave it working
        return
    if key.cloud_name:
        get_runtime().revoke_key(key.endpoint.name, key.cloud_name)
    _runtime_done(key)


def _runtime_done(key: ApiKey) -> None:
    if key.runtime_error:
        ApiKey.objects.filter(pk=key.pk).update(runtime_error="")


def api_key_runtime_fail(*, key_id: int, error: str) -> None:
    """Record that the runtime did not carry out the key's last revoke or restore: on the key (the
    dashboard shows it) and in the audit log."""
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key_id)
        key.runtime_error = error[:2000]
        key.save(update_fields=["runtime_error"])
        action = "api_key.revoke_failed" if key.revoked_at else "api_key.restore_failed"
        audit_record(actor=None, action=action, target=key, details={"error": error[:1000]})


def api_key_restore(*, user, key: ApiKey) -> ApiKey:
    """Undo a revoke made less than KEY_RESTORE_DAYS ago; the worker restores the key at the runtime."""
    require_admin(user)
    now = timezone.now()
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().select_related("endpoint").get(pk=key.pk)
        if locked.revoked_at is None:
            raise ServiceError("This key is not revoked.", code="conflict")
        if locked.team_id is None:
            raise ServiceError("A load test's key is not restored: start another test.", code="conflict")
        if locked.revoked_at < now - timedelta(days=KEY_RESTORE_DAYS):
            raise ServiceError(
                f"This key was revoked on {locked.revoked_at:%Y-%m-%d %H:%M} UTC, more than "
                f"{KEY_RESTORE_DAYS} days ago, and can no longer be restored; request a new key instead.",
                code="conflict",
            )
        if locked.expires_at and locked.expires_at <= now:
            raise ServiceError(
                f"This key expired on {locked.expires_at:%Y-%m-%d %H:%M} UTC; request a new key instead.",
                code="conflict",
            )
        if (
            locked.request_id
            and ApiKeyRequest.objects.filter(pk=locked.request_id, revealed_at__isnull=True).exists()
        ):
            raise ServiceError(
                "This key was revoked before anyone saw it, and its secret was erased: restored, it would "
                "work for nobody who holds it. Request a new key instead.",
                code="conflict",
            )
        revoked_at = locked.revoked_at
        locked.revoked_at = None
        locked.revoked_by = None
        # A rotated key that was restored is wanted again: it no longer goes at the overlap's end.
        locked.revoke_after = None
        locked.save(update_fields=["revoked_at", "revoked_by", "revoke_after"])
        audit_record(
            actor=user,
            action="api_key.restore",
            target=locked,
            details={"prefix": locked.prefix, "revoked_at": revoked_at.isoformat()},
        )
        owe(queue.RESTORE_KEY, locked.pk)
        access_sync_enqueue(locked.endpoint)
    key.refresh_from_db()
    return key


def api_key_restore_at_runtime(*, key_id: int) -> None:
    """Restore the key at the runtime (in the worker), unless it was revoked again since.

    A runtime that can no longer bring the key back raises PermanentError: the key is then
    recorded as revoked again, so the dashboard does not show a key that works nowhere.
    """
    key = ApiKey.objects.select_related("endpoint").get(pk=key_id)
    if key.revoked_at is not None or not key.cloud_name:
        return
    try:
        get_runtime().restore_key(key.endpoint.name, key.cloud_name)
        _runtime_done(key)
    except PermanentError as exc:
        with transaction.atomic():
            if ApiKey.objects.filter(pk=key_id, revoked_at__isnull=True).update(revoked_at=timezone.now()):
                _erase_secret(key)
                details = {"error": str(exc)[:1000]}
                audit_record(actor=None, action="api_key.restore_failed", target=key, details=details)
                access_sync_enqueue(key.endpoint)


def api_key_rotate(*, user, key: ApiKey, overlap_hours: int | None = None) -> ApiKeyRequest:
    """Issue the key's team a new key for the same endpoint; revoke this one `overlap_hours` later.

    The new key goes through the path of an approved request (the worker issues it, a member of
    the team sees it once), so rotation returns that request. The old key is revoked by beat once
    the overlap has passed and the new key was issued; if issuing fails, the old key stays.
    """
    require_admin(user)
    if overlap_hours is None:
        overlap_hours = DEFAULT_OVERLAP_HOURS
    if isinstance(overlap_hours, bool) or not isinstance(overlap_hours, int):
        raise ServiceError("Give the overlap as a whole number of hours.", field="overlap_hours")
    if not 0 <= overlap_hours <= MAX_OVERLAP_HOURS:
        raise ServiceError(OVERLAP_RANGE, field="overlap_hours")
    now = timezone.now()
    with transaction.atomic():
        locked = (
            ApiKey.objects.select_for_update(of=("self",))
            .select_related("endpoint", "team", "request", "replacement")
            .get(pk=key.pk)
        )
        if locked.state != "active":
            raise ServiceError(
                f"This key is {locked.state}; only an active key can be rotated.", code="conflict"
            )
        replacement = locked.replacement
        if replacement is not None and replacement.status in (
            KeyRequestStatus.APPROVED,
            KeyRequestStatus.ISSUED,
        ):
            raise ServiceError(
                f"This key is already being rotated (request {replacement.pk}).", code="conflict"
            )
        if locked.team is None:
            raise ServiceError(
                "A load test's key is not rotated: it is revoked when its test ends.", code="conflict"
            )
        endpoint = locked.endpoint
        if not endpoint.checks_keys:
            raise ServiceError(f"Endpoint {endpoint.name!r} no longer uses API keys.", code="conflict")
        valid_days = locked.request.valid_days if locked.request else settings.API_KEY_DEFAULT_DAYS
        note = f"rotation of key {locked.prefix}"
        request = _approved_request(
            user=user,
            team=locked.team,
            endpoint=endpoint,
            reason=f"Rotation of key {locked.prefix}… ({overlap_hours} h overlap)",
            valid_days=valid_days,
            requested_by=user,
            note=note,
            now=now,
        )
        locked.replacement = request
        locked.revoke_after = now + timedelta(hours=overlap_hours)
        locked.save(update_fields=["replacement", "revoke_after"])
        audit_record(
            actor=user,
            action="api_key.rotate",
            target=locked,
            details={
                "prefix": locked.prefix,
                "request": request.pk,
                "overlap_hours": overlap_hours,
                "revoke_after": locked.revoke_after.isoformat(),
            },
        )
        _issue_after_commit(request)
        # The access file carries the old key's new end (see `access_policy_for`).
        access_sync_enqueue(endpoint)
    key.refresh_from_db()
    return request


def api_keys_expire(*, now=None) -> list[int]:
    """Revoke, as the system, every key past its expiry, past a finished rotation's overlap, or
    left unseen past its reveal window (whose request then says it expired unseen).

    Safe to run any number of times: each key is claimed by a conditional update, so a key is
    revoked (and audited) once. The runtime revoke goes through `worker.revoke_key`, which retries.
    """
    now = now or timezone.now()
    revoked = []
    window = timedelta(hours=settings.KEY_REVEAL_WINDOW_HOURS)
    unseen = ApiKeyRequest.objects.filter(
        status=KeyRequestStatus.ISSUED, revealed_at__isnull=True, issued_at__lte=now - window
    ).exclude(sealed_secret="")
    for request_id in unseen.order_by("id").values_list("id", flat=True):
        with transaction.atomic():
            locked = ApiKeyRequest.objects.select_for_update().get(pk=request_id)
            if _reveal_window_passed(locked, now):  # not revealed meanwhile
                key_id = _expire_unseen(locked, now=now)
                if key_id is not None:
                    revoked.append(key_id)
    due = ApiKey.objects.filter(revoked_at__isnull=True).filter(
        Q(expires_at__lte=now) | Q(revoke_after__lte=now, replacement__status=KeyRequestStatus.ISSUED)
    )
    for key in due.select_related("endpoint").order_by("id"):
        reason = "expired" if key.expires_at and key.expires_at <= now else "rotated"
        if _revoke_as_system(key, now=now, reason=reason):
            revoked.append(key.pk)
    return revoked
