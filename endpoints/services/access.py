"""The access policy of an endpoint (keys + allowlist) as the runtime enforces it."""

from django.db import transaction

from endpoints.models import Endpoint
from portal.celery import app
from worker.runtimes.base import AccessPolicy, KeyRecord


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
    return AccessPolicy(mode=endpoint.access_mode, keys=keys, cidrs=cidrs)


def access_sync_enqueue(endpoint: Endpoint) -> None:
    """After this transaction commits, push the endpoint's access policy to its runtime."""
    endpoint_id = endpoint.pk
    transaction.on_commit(lambda: app.send_task("worker.apply_access", args=[endpoint_id]))


def access_apply(*, endpoint_id: int) -> None:
    """Push the endpoint's current keys and allowlist to the runtime (from the worker)."""
    from worker.runtimes import get_runtime

    endpoint = Endpoint.objects.get(pk=endpoint_id)
    get_runtime().apply_access(endpoint.name, access_policy_for(endpoint))
