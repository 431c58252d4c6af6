"""The access policy of an endpoint (mode, keys, allowlist, identity) as the runtime enforces it.

Every change to a policy goes one way: the service that makes it calls `access_sync_enqueue` in
its transaction, which bumps the endpoint's `access_revision` and, on commit, queues
`worker.apply_access`. The task (`access_apply`) claims the endpoint with a conditional update,
so two workers never push one endpoint's policy at once, pushes the policy as it is then, records
the revision it pushed, and lets go only if no newer change came in meanwhile (else it pushes that
too: the newer change's own task may have found the claim taken). The endpoint page and the API
compare the two revisions: applied, pending since ..., failed: ..., or needs a deploy.

    with transaction.atomic():
        AllowlistEntry.objects.create(endpoint=endpoint, cidr="203.0.113.0/24", added_by=user)
        access_sync_enqueue(endpoint)
"""

import logging

from django.db import transaction
from django.db.models import Case, F, Q, When
from django.utils import timezone

from endpoints.models import Endpoint
from endpoints.services import claims
from endpoints.services.audit import audit_record
from endpoints.services.errors import ServiceError
from endpoints.services.identity import identity_policy_for
from endpoints.services.owed import owe
from portal import queue
from worker.runtimes import get_runtime
from worker.runtimes.base import AccessPolicy, KeyRecord

log = logging.getLogger(__name__)

#: What `access_apply` answers when another worker holds the endpoint's claim. That worker pushes
#: every change it finds before it lets go; the task is sent again once the claim could have lapsed.
BUSY = "another worker is applying this endpoint's access policy"


def access_policy_for(endpoint: Endpoint) -> AccessPolicy:
    keys = tuple(
        KeyRecord(
            prefix=key.prefix,
            key_hash=key.key_hash,
            # A rotated key stops at the end of its overlap even before beat revokes it.
            expires_at=key.ends_at.isoformat() if key.ends_at else None,
            revoked=key.revoked_at is not None,
        )
        for key in endpoint.api_keys.order_by("id")
    )
    cidrs = tuple(endpoint.allowlist.order_by("cidr").values_list("cidr", flat=True))
    return AccessPolicy(
        mode=endpoint.access_mode, keys=keys, cidrs=cidrs, identity=identity_policy_for(endpoint)
    )


def refuse_while_deleting(endpoint: Endpoint) -> None:
    """Refuse a change to an endpoint that is deleted or being deleted: the delete takes it all down."""
    if endpoint.deleted_at or endpoint.deletion_pending:
        raise ServiceError(f"Endpoint {endpoint.name!r} is being deleted.", code="conflict")


def access_sync_enqueue(endpoint: Endpoint) -> None:
    """Ask for the endpoint's policy to be pushed again: call it in the transaction that changes
    the policy; once that commits, the push is queued."""
    now = timezone.now()
    Endpoint.objects.filter(pk=endpoint.pk).update(
        access_revision=F("access_revision") + 1,
        # "Pending since" the oldest change not yet applied.
        access_requested_at=Case(
            When(access_applied_revision__gte=F("access_revision"), then=now),
            default=F("access_requested_at"),
        ),
        access_error="",
    )
    endpoint.refresh_from_db(fields=["access_revision", "access_requested_at", "access_error"])
    owe(queue.APPLY_ACCESS, endpoint.pk)


def access_mode_note(endpoint: Endpoint, mode: str) -> str:
    """Why the runtime cannot put `mode` in force on the live deployment without a deploy ("" if it can)."""
    live = endpoint.live_deployment
    if live is None:
        return ""
    _, note = get_runtime().access_for_live(live.resources, AccessPolicy(mode=mode))
    return note


def access_apply(*, endpoint_id: int) -> str:
    """Push the endpoint's policy to the runtime until what is in force is the latest asked for
    (from the worker). Raises the runtime's errors; `access_fail` records a final one.

    The endpoint is claimed for DEPLOY_CLAIM_SECONDS, renewed while the runtime works, so the claim
    of a worker that died lapses as soon as a deploy's would. BUSY when another worker has it.
    """
    now = timezone.now()
    claimed = (
        Endpoint.objects.filter(pk=endpoint_id)
        .filter(Q(access_claimed_until__isnull=True) | Q(access_claimed_until__lt=now))
        .update(access_claimed_until=claims.claim_until())
    )
    if not claimed:
        if not Endpoint.objects.filter(pk=endpoint_id).exists():
            return "the endpoint is gone"
        return BUSY
    endpoint = Endpoint.objects.get(pk=endpoint_id)
    if endpoint.deleted_at or endpoint.deletion_pending:
        Endpoint.objects.filter(pk=endpoint_id).update(access_claimed_until=None)
        return "the endpoint is deleted or being deleted: its delete removes its policy"
    try:
        while True:
            endpoint = Endpoint.objects.select_related("live_deployment").get(pk=endpoint_id)
            revision = endpoint.access_revision
            if endpoint.access_applied_revision < revision:
                runtime = get_runtime()
                live = endpoint.live_deployment.resources if endpoint.live_deployment else None
                policy, note = runtime.access_for_live(live, access_policy_for(endpoint))
                with claims.renewed(
                    lambda: Endpoint.objects.filter(
                        pk=endpoint_id, access_claimed_until__isnull=False
                    ).update(access_claimed_until=claims.claim_until()),
                    what=f"the access policy of {endpoint.name}",
                ):
                    runtime.apply_access(endpoint.name, policy)
                Endpoint.objects.filter(pk=endpoint_id, access_applied_revision__lt=revision).update(
                    access_applied_revision=revision,
                    access_applied_at=timezone.now(),
                    access_error="",
                    access_note=note,
                )
            # Let go, unless a change came in meanwhile: then push that one too.
            if Endpoint.objects.filter(pk=endpoint_id, access_revision=revision).update(
                access_claimed_until=None
            ):
                return f"revision {revision} applied"
    except BaseException:
        Endpoint.objects.filter(pk=endpoint_id).update(access_claimed_until=None)
        raise


def access_fail(*, endpoint_id: int, error: str) -> None:
    """Record that the endpoint's policy could not be applied; the page shows it until a change
    is applied."""
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().filter(pk=endpoint_id).first()
        if endpoint is None or endpoint.access_applied_revision >= endpoint.access_revision:
            return  # a later run applied it meanwhile
        endpoint.access_error = error[:4000]
        endpoint.save(update_fields=["access_error"])
        audit_record(
            actor=None,
            action="access.failed",
            target=endpoint,
            details={"revision": endpoint.access_revision, "error": error[:1000]},
        )
