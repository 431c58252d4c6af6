"""IAM on a Cloud Run service: change one role's members, never replace the whole policy.

SetIamPolicy overwrites whatever is there, so a change is a read-modify-write carrying the etag
it read; when someone else wrote in between, IAM answers ABORTED and we read again. A policy that
already says what is asked costs one read and no write. Bindings with a condition, and other
roles, are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable

from google.api_core import exceptions as gexc

from worker.runtimes.base import PermanentError, TransientError
from worker.runtimes.gcp.clients import Context

INVOKER = "roles/run.invoker"
ATTEMPTS = 5
#: Principals that would make a service public: the identity mode never binds them.
PUBLIC = ("allUsers", "allAuthenticatedUsers")


def _change(ctx: Context, client, resource: str, change: Callable, *, what: str, validate_only: bool) -> bool:
    """Read the policy, let `change` edit it (it answers False when nothing needs changing), write
    it with the etag read; again on ABORTED. True if the policy changed (or would)."""
    for _ in range(ATTEMPTS):
        policy = ctx.call(
            client.get_iam_policy,
            request={"resource": resource, "options": {"requested_policy_version": 3}},
            what=f"Read the IAM policy of {resource}",
        )
        if not change(policy, validate_only):
            return False
        if validate_only:
            return True
        written = ctx.call(
            client.set_iam_policy,
            request={"resource": resource, "policy": policy},
            what=what,
            accept=(gexc.Aborted,),  # stale etag: someone else wrote; read again
        )
        if written is not None:
            return True
    raise TransientError(f"The IAM policy of {resource} kept changing under us; will try again.")


def _unconditional(policy, role: str) -> list:
    return [b for b in policy.bindings if b.role == role and not b.HasField("condition")]


def grant(
    ctx: Context, client, resource: str, role: str, member: str, *, validate_only: bool = False
) -> bool:
    """Bind `member` to `role` on `resource`; True if the policy changed (or would, when validating)."""

    def add(policy, validate_only: bool) -> bool:
        bound = _unconditional(policy, role)
        if any(member in binding.members for binding in bound):
            return False
        if not validate_only:
            if bound:
                bound[0].members.append(member)
            else:
                policy.bindings.add(role=role, members=[member])
        return True

    what = f"Grant {role} on {resource} to {member}"
    return _change(ctx, client, resource, add, what=what, validate_only=validate_only)


def set_members(
    ctx: Context, client, resource: str, role: str, members: list[str], *, validate_only: bool = False
) -> bool:
    """Make `members` exactly the unconditional members of `role` on `resource` (no binding when
    empty); True if the policy changed (or would, when validating)."""
    public = [member for member in members if member in PUBLIC]
    if public:
        raise PermanentError(f"{', '.join(public)} would make {resource} public; refused.")
    wanted = sorted(set(members))

    def replace(policy, validate_only: bool) -> bool:
        if sorted({member for b in _unconditional(policy, role) for member in b.members}) == wanted:
            return False
        if not validate_only:
            kept = [b for b in policy.bindings if b.role != role or b.HasField("condition")]
            del policy.bindings[:]
            policy.bindings.extend(kept)
            if wanted:
                policy.bindings.add(role=role, members=wanted)
        return True

    what = f"Set the members of {role} on {resource}"
    return _change(ctx, client, resource, replace, what=what, validate_only=validate_only)
