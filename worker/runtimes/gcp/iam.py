"""IAM on a Cloud Run service: change one role's members, never replace the whole policy.

SetIamPolicy overwrites whatever is there, so a change is a read-modify-write carrying the etag
it read; when someone else wrote in between, IAM answers ABORTED and we read again. A policy that
already says what is asked costs one read and no write. Bindings with a condition, and other
roles, are left as they are.
"""

from __future__ import annotations

from google.api_core import exceptions as gexc

from worker.runtimes.base import PermanentError, TransientError
from worker.runtimes.gcp.clients import Context

INVOKER = "roles/run.invoker"
ATTEMPTS = 5
#: Principals that would make a service public: the identity mode never binds them.
PUBLIC = ("allUsers", "allAuthenticatedUsers")


def grant(
    ctx: Context, client, resource: str, role: str, member: str, *, validate_only: bool = False
) -> bool:
    """Bind `member` to `role` on `resource`; True if the policy changed (or would, when validating)."""
    for _ in range(ATTEMPTS):
        policy = ctx.call(
            client.get_iam_policy,
            request={"resource": resource, "options": {"requested_policy_version": 3}},
            what=f"Read the IAM policy of {resource}",
        )
        unconditional = [b for b in policy.bindings if b.role == role and not b.HasField("condition")]
        if any(member in binding.members for binding in unconditional):
            return False
        if validate_only:
            return True
        if unconditional:
            unconditional[0].members.append(member)
        else:
            policy.bindings.add(role=role, members=[member])
        written = ctx.call(
            client.set_iam_policy,
            request={"resource": resource, "policy": policy},
            what=f"Grant {role} on {resource} to {member}",
            accept=(gexc.Aborted,),  # stale etag: someone else wrote; read again
        )
        if written is not None:
            return True
    raise TransientError(f"The IAM policy of {resource} kept changing under us; will try again.")


def set_members(
    ctx: Context, client, resource: str, role: str, members: list[str], *, validate_only: bool = False
) -> bool:
    """Make `members` exactly the unconditional members of `role` on `resource` (no binding when
    empty); True if the policy changed (or would, when validating)."""
    public = [member for member in members if member in PUBLIC]
    if public:
        raise PermanentError(f"{', '.join(public)} would make {resource} public; refused.")
    wanted = sorted(set(members))
    for _ in range(ATTEMPTS):
        policy = ctx.call(
            client.get_iam_policy,
            request={"resource": resource, "options": {"requested_policy_version": 3}},
            what=f"Read the IAM policy of {resource}",
        )
        unconditional = [b for b in policy.bindings if b.role == role and not b.HasField("condition")]
        if sorted({member for b in unconditional for member in b.members}) == wanted:
            return False
        if validate_only:
            return True
        kept = [b for b in policy.bindings if b.role != role or b.HasField("condition")]
        del policy.bindings[:]
        policy.bindings.extend(kept)
        if wanted:
            policy.bindings.add(role=role, members=wanted)
        written = ctx.call(
            client.set_iam_policy,
            request={"resource": resource, "policy": policy},
            what=f"Set the members of {role} on {resource}",
            accept=(gexc.Aborted,),  # stale etag: someone else wrote; read again
        )
        if written is not None:
            return True
    raise TransientError(f"The IAM policy of {resource} kept changing under us; will try again.")
