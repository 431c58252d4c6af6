"""API Keys: one Google API key per approved key request, usable only on its endpoint's gateway.

A key is created under a fixed id, `<endpoint>-<portal key id>`, so a retried issue meets
AlreadyExists and finds its key instead of making a second one. Each key is restricted to the
endpoint's gateway managed service (`api_targets`) and, when the endpoint also checks addresses,
to its allowlist (`server_key_restrictions.allowed_ips`). An empty `allowed_ips` means "any address"
to Google, so an address-checking endpoint with an empty allowlist restricts its keys to
255.255.255.255 (`NOBODY`), an address no request comes from (RFC 6890: never a source): the keys
then work from nowhere, as the portal's empty allowlist means. The key string is read once, to be shown
once; the portal keeps only its hash. Google keys never expire: the portal deletes them when they
do. A deleted key stays undeletable for 30 days (`restore`).
"""

from __future__ import annotations

import re

from google.api_core import exceptions as gexc
from google.cloud import api_keys_v2

from worker.runtimes.base import IssuedKey, KeySpec, PermanentError
from worker.runtimes.gcp.clients import Context
from worker.runtimes.gcp.operations import operation_result

KEY_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
ENDPOINT_ANNOTATION = "portal-endpoint"
NOBODY = ("255.255.255.255/32",)


def allowed_ips(cidrs: tuple[str, ...], check_addresses: bool) -> tuple[str, ...]:
    """What a key's allowed_ips must be for the endpoint: nothing to check, the list, or nobody."""
    if not check_addresses:
        return ()
    return tuple(cidrs) or NOBODY


def parent(ctx: Context) -> str:
    return f"projects/{ctx.cfg.project}/locations/global"


def key_id(spec: KeySpec) -> str:
    value = f"{spec.endpoint}-{spec.key_id}".lower()
    if not KEY_ID.match(value):
        raise PermanentError(f"Key id {value!r} is not valid for the API Keys API.")
    return value


def restrictions(managed_service: str, cidrs: tuple[str, ...]) -> api_keys_v2.Restrictions:
    return api_keys_v2.Restrictions(
        api_targets=[api_keys_v2.ApiTarget(service=managed_service)],
        server_key_restrictions=api_keys_v2.ServerKeyRestrictions(allowed_ips=list(cidrs)) if cidrs else None,
    )


def issue(ctx: Context, spec: KeySpec, managed_service: str) -> IssuedKey:
    client = ctx.clients.keys()
    kid = key_id(spec)
    name = f"{parent(ctx)}/keys/{kid}"
    started = ctx.wall()
    operation = ctx.call(
        client.create_key,
        parent=parent(ctx),
        key_id=kid,
        key=api_keys_v2.Key(
            display_name=spec.display_name[:63],
            restrictions=restrictions(
                managed_service, allowed_ips(spec.cidrs, spec.check_addresses or bool(spec.cidrs))
            ),
            annotations={ENDPOINT_ANNOTATION: spec.endpoint, "portal-key-id": spec.key_id},
        ),
        what=f"Create API key {kid}",
        accept=(gexc.AlreadyExists,),  # an earlier try made it: find it below
    )
    if operation is not None:
        key = operation_result(
            ctx, client, operation.operation.name, what=f"Create API key {kid}", started=started,
            result_cls=api_keys_v2.Key,
        )  # fmt: skip
    else:
        key = ctx.call(client.get_key, name=name, what=f"Read API key {kid}")
        if key.annotations.get(ENDPOINT_ANNOTATION) != spec.endpoint:
            raise PermanentError(f"API key {kid} already exists and belongs to something else.")
        if key.delete_time:
            raise PermanentError(f"API key {kid} was deleted; restore it or issue a new one.")
    secret = ctx.call(client.get_key_string, name=key.name, what=f"Read the string of API key {kid}")
    return IssuedKey(name=key.name, secret=secret.key_string)


def revoke(ctx: Context, name: str) -> bool:
    """Delete the key; False if it was already gone."""
    client = ctx.clients.keys()
    started = ctx.wall()
    operation = ctx.call(client.delete_key, name=name, what=f"Delete API key {name}", accept=(gexc.NotFound,))
    if operation is None:
        return False
    operation_result(ctx, client, operation.operation.name, what=f"Delete API key {name}", started=started)
    return True


def restore(ctx: Context, name: str) -> bool:
    """Undo a revoke (within Google's 30 days); False if the key was never deleted.

    UndeleteKey answers NOT_FOUND both for a live key (the portal's revoke task had not run yet)
    and for one past the window: a read tells the two apart.
    """
    client = ctx.clients.keys()
    started = ctx.wall()
    operation = ctx.call(
        client.undelete_key,
        request={"name": name},
        what=f"Restore API key {name}",
        accept=(gexc.NotFound,),
    )
    if operation is None:
        key = ctx.call(client.get_key, name=name, what=f"Read API key {name}", accept=(gexc.NotFound,))
        if key is not None and not key.delete_time:
            return False
        raise PermanentError(f"API key {name} can no longer be restored (deleted more than 30 days ago).")
    operation_result(ctx, client, operation.operation.name, what=f"Restore API key {name}", started=started)
    return True


def endpoint_keys(ctx: Context, endpoint: str) -> list[api_keys_v2.Key]:
    """The live keys the portal made for `endpoint` (ListKeys has no filter: read the pages)."""
    client = ctx.clients.keys()
    found, token = [], ""
    while True:
        page = ctx.call(
            client.list_keys,
            request={"parent": parent(ctx), "page_size": 300, "page_token": token},
            what="List API keys",
        )
        # One page per call (the pager's attributes are its first response's), so each page
        # read gets our retries rather than the pager's.
        found += [key for key in page.keys if key.annotations.get(ENDPOINT_ANNOTATION) == endpoint]
        token = page.next_page_token
        if not token:
            return found


def sync_allowed_ips(ctx: Context, endpoint: str, cidrs: tuple[str, ...]) -> int:
    """Make every key of the endpoint carry exactly `cidrs` as allowed IPs; returns how many changed."""
    client = ctx.clients.keys()
    changed = 0
    for key in endpoint_keys(ctx, endpoint):
        current = tuple(key.restrictions.server_key_restrictions.allowed_ips)
        if sorted(current) == sorted(cidrs):
            continue
        services = [target.service for target in key.restrictions.api_targets]
        wanted = api_keys_v2.Key(
            name=key.name,
            etag=key.etag,
            restrictions=restrictions(services[0], cidrs) if services else None,
        )
        started = ctx.wall()
        operation = ctx.call(
            client.update_key,
            key=wanted,
            update_mask={"paths": ["restrictions"]},
            what=f"Restrict API key {key.name.rsplit('/', 1)[-1]} to the allowlist",
        )
        operation_result(
            ctx, client, operation.operation.name, what=f"Update API key {key.name}", started=started
        )
        changed += 1
    return changed
