"""IP allowlists: CIDRs (IPv4 or IPv6) that may call an endpoint."""

import ipaddress

from django.db import IntegrityError, transaction

from endpoints.models import AllowlistEntry, Endpoint
from endpoints.services.access import access_sync_enqueue, refuse_while_deleting
from endpoints.services.audit import audit_record
from endpoints.services.errors import ServiceError, Unprocessable, require_admin

MAX_ENTRIES = 200
#: The characters an address or range is written with, for the API's schema: digits, hex letters,
#: ":" and ".", an IPv6 zone after "%", then a prefix length or a mask after "/". normalise_cidr
#: says which are addresses.
CIDR_SHAPE = r"^\s*[0-9A-Fa-f:.]+(%[^/\s]+)?(/[0-9.]+)?\s*$"


def normalise_cidr(raw: str) -> str:
    """'10.0.0.7/24' is refused (host bits set); '10.0.0.7' becomes '10.0.0.7/32'."""
    text = (raw or "").strip()
    if not text:
        raise ServiceError("Give an IP address or CIDR range.", field="cidr")
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            fixed = ipaddress.ip_network(text, strict=False)
            raise Unprocessable(f"{text} has host bits set; did you mean {fixed}?", field="cidr") from None
        raise Unprocessable(
            f"{text!r} is not a valid IPv4 or IPv6 address or CIDR range.", field="cidr"
        ) from None
    return network.with_prefixlen


#: What a refusal of a range that holds every address says: add it again with `allow_everyone`.
CONFIRM_EVERYONE = "confirm_everyone"


def lets_everyone_in(cidr: str) -> bool:
    """0.0.0.0/0 or ::/0: every IPv4 (or IPv6) address there is."""
    return ipaddress.ip_network(cidr).prefixlen == 0


def allowlist_add(
    *, user, endpoint: Endpoint, cidr: str, note: str = "", allow_everyone: bool = False
) -> AllowlistEntry:
    """Add a CIDR to the allowlist. A range of every address (0.0.0.0/0, ::/0) is added only with
    `allow_everyone`: it turns the address check off for that family, which is rarely meant."""
    require_admin(user)
    refuse_while_deleting(endpoint)
    cidr = normalise_cidr(cidr)
    if lets_everyone_in(cidr) and allow_everyone is not True:
        family = "IPv4" if "." in cidr else "IPv6"
        raise Unprocessable(
            f"{cidr} lets everyone in: every {family} address passes the address check, so the "
            f"allowlist stops no {family} caller. Confirm that this is what you want "
            "(allow_everyone) to add it.",
            field="cidr",
            code=CONFIRM_EVERYONE,
        )
    if endpoint.allowlist.filter(cidr=cidr).exists():
        raise ServiceError(f"{cidr} is already on the allowlist.", field="cidr", code="conflict")
    if endpoint.allowlist.count() >= MAX_ENTRIES:
        raise ServiceError(
            f"An allowlist holds at most {MAX_ENTRIES} entries.", field="cidr", code="conflict"
        )
    try:
        with transaction.atomic():
            entry = AllowlistEntry.objects.create(
                endpoint=endpoint, cidr=cidr, note=(note or "").strip()[:200], added_by=user
            )
            audit_record(
                actor=user,
                action="allowlist.add",
                target=endpoint,
                details={
                    "cidr": cidr,
                    "note": entry.note,
                    **({"everyone": True} if lets_everyone_in(cidr) else {}),
                },
            )
            access_sync_enqueue(endpoint)
    except IntegrityError:
        raise ServiceError(f"{cidr} is already on the allowlist.", field="cidr", code="conflict") from None
    return entry


def allowlist_remove(*, user, entry: AllowlistEntry) -> None:
    require_admin(user)
    endpoint = entry.endpoint
    refuse_while_deleting(endpoint)
    with transaction.atomic():
        deleted, _ = AllowlistEntry.objects.filter(pk=entry.pk).delete()
        if not deleted:
            raise ServiceError(f"{entry.cidr} is no longer on the allowlist.", code="conflict")
        audit_record(actor=user, action="allowlist.remove", target=endpoint, details={"cidr": entry.cidr})
        access_sync_enqueue(endpoint)
