"""Create and change endpoints."""

import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from endpoints.models import AccessMode, Endpoint
from endpoints.services.access import access_mode_note, access_sync_enqueue, refuse_while_deleting
from endpoints.services.audit import audit_record
from endpoints.services.errors import ServiceError, Unprocessable, refuse_all, require_admin
from endpoints.services.identity import IDENTITY_FIELDS, identity_fill_defaults, identity_problems
from worker.runtimes import get_runtime

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
    *IDENTITY_FIELDS,
)


CPU = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
MEMORY = re.compile(r"^(\d+)(Mi|Gi|M|G)$")
#: The CPU values resources_refusal takes, as one pattern for the API's schema: 0.08 to 1 vCPU or a
#: whole number up to 8, in vCPUs or in millicores (test_endpoint_resources checks they agree).
CPU_ACCEPTED = (
    r"^(0*0\.(0[89]|[1-9])[0-9]*|0*1(\.0+)?|0*[2-8](\.0+)?|0*(8[0-9]|9[0-9]|[1-9][0-9][0-9]|1000|[2-8]000)m)$"
)
#: The memory sizes it reads; which of them Cloud Run takes depends on the CPU (MEMORY_FOR_CPU).
MEMORY_SHAPE = r"^[0-9]+(Mi|Gi|M|G)$"
MEMORY_UNITS = {"Mi": 2**20, "Gi": 2**30, "M": 10**6, "G": 10**9}
#: Cloud Run's memory range for a number of vCPUs (Configure CPU limits for services): from the
#: largest row at or under the CPU asked.
MEMORY_FOR_CPU = (
    (8, 4 * 2**30, 32 * 2**30),
    (6, 4 * 2**30, 24 * 2**30),
    (4, 2 * 2**30, 16 * 2**30),
    (2, 128 * 2**20, 8 * 2**30),
    (1, 128 * 2**20, 4 * 2**30),
    (0.5, 128 * 2**20, 2**30),
    (0.08, 128 * 2**20, 512 * 2**20),
)


def _size(value: float) -> str:
    return f"{value / 2**30:g} GiB" if value >= 2**30 else f"{value / 2**20:g} MiB"


def resources_refusal(cpu: str, memory: str) -> tuple[str, str] | None:
    """(field, why) when Cloud Run would refuse this CPU and memory, None when it takes them."""
    if not CPU.match(cpu):
        return "cpu", f"CPU {cpu!r} is not a number of vCPUs (1, 2, 4, 6, 8, or 0.08 to 1)."
    vcpus = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    if not 0.08 <= vcpus <= 8 or (vcpus > 1 and vcpus != int(vcpus)):
        return "cpu", f"CPU {cpu} is not allowed: use 0.08 to 1, or a whole number up to 8."
    size = MEMORY.match(memory)
    if size is None:
        return "memory", f"Memory {memory!r} is not a size such as 512Mi or 4Gi."
    amount = int(size.group(1)) * MEMORY_UNITS[size.group(2)]
    _, least, most = next(row for row in MEMORY_FOR_CPU if vcpus >= row[0])
    if not least <= amount <= most:
        return "memory", (
            f"With {cpu} vCPU, Cloud Run takes {_size(least)} to {_size(most)} of memory: change the "
            "memory or the CPU."
        )
    return None


def check_min_instances(endpoint: Endpoint) -> None:
    """Refuse a minimum of instances the runtime cannot keep (Kubernetes without a scale-to-zero
    controller cannot keep 0), in the runtime's words."""
    refusal = get_runtime().min_instances_refusal(endpoint.min_instances)
    if refusal:
        raise Unprocessable(refusal, field="min_instances")


def _validate(endpoint: Endpoint, exclude=(), also: tuple[ServiceError, ...] = ()) -> None:
    """Refuse settings the endpoint cannot have: the first problem is raised, carrying every other
    one (`ServiceError.also`) so a form can show them all at once; `also` adds the caller's own."""
    problems: list[ServiceError] = []
    try:
        endpoint.full_clean(exclude=["created_by", "live_deployment", *exclude])
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            problems.append(ServiceError(" ".join(messages), field=None if field == "__all__" else field))
    bad = {problem.field for problem in problems}
    if not {"min_instances", "max_instances"} & bad and endpoint.min_instances > endpoint.max_instances:
        problems.append(
            Unprocessable("Minimum instances cannot exceed maximum instances.", field="min_instances")
        )
    if "min_instances" not in bad:
        try:
            check_min_instances(endpoint)
        except Unprocessable as exc:
            problems.append(exc)
    refusal = None if {"cpu", "memory"} & bad else resources_refusal(endpoint.cpu, endpoint.memory)
    if refusal:
        field, why = refusal
        # A CPU, or a memory size's form, is refused by its field's own rule; a size outside the
        # range for that CPU, by the two fields together.
        together = field == "memory" and MEMORY.match(endpoint.memory)
        problems.append((Unprocessable if together else ServiceError)(why, field=field))
    problems.extend(identity_problems(endpoint, get_runtime()))
    problems.extend(also)
    refuse_all(problems)


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
            code="conflict",
        )
    if existing:
        raise ServiceError(f"An endpoint named {name!r} already exists.", field="name", code="conflict")
    endpoint = Endpoint(name=name, created_by=user, **fields)
    identity_fill_defaults(endpoint, get_runtime())
    _validate(
        endpoint,
        exclude=["name"] if not name else (),
        also=() if name else (ServiceError("Give the endpoint a name.", field="name"),),
    )
    try:
        with transaction.atomic():
            endpoint.save()
            # Identity settings left empty are no news (the form sends them all).
            details = {key: value for key, value in fields.items() if key not in IDENTITY_FIELDS or value}
            audit_record(actor=user, action="endpoint.create", target=endpoint, details=details)
    except IntegrityError:
        raise ServiceError(
            f"An endpoint named {name!r} already exists.", field="name", code="conflict"
        ) from None
    return endpoint


def endpoint_update(*, user, endpoint: Endpoint, **fields) -> Endpoint:
    """Change an endpoint's settings; they take effect with its next deployment, except the access
    mode, which is pushed to the runtime at once, as allowlist and key changes are."""
    require_admin(user)
    unknown = set(fields) - set(SETTINGS_FIELDS)
    if unknown:
        raise ServiceError(f"These settings cannot be changed: {sorted(unknown)}.")
    before = {key: getattr(endpoint, key) for key in SETTINGS_FIELDS}
    for key, value in fields.items():
        setattr(endpoint, key, value)
    identity_fill_defaults(endpoint, get_runtime())
    changed = {
        key: getattr(endpoint, key) for key in SETTINGS_FIELDS if getattr(endpoint, key) != before[key]
    }
    if changed:
        refuse_while_deleting(endpoint)
    _validate(endpoint)
    if not changed:
        return endpoint
    with transaction.atomic():
        endpoint.save(update_fields=list(changed))
        details = dict(changed)
        if "access_mode" in changed or (
            endpoint.access_mode == AccessMode.IDENTITY and set(changed) & set(IDENTITY_FIELDS)
        ):
            access_sync_enqueue(endpoint)
            details["access_revision"] = endpoint.access_revision
            # Said at once (the worker says it again when it has applied what it can).
            endpoint.access_note = access_mode_note(endpoint, endpoint.access_mode)
            Endpoint.objects.filter(pk=endpoint.pk).update(access_note=endpoint.access_note)
            if endpoint.access_note:
                details["access_note"] = endpoint.access_note
        audit_record(actor=user, action="endpoint.update", target=endpoint, details=details)
    return endpoint
