"""IAM on a Cloud Run service: add one member to one role, never replace the whole policy.

SetIamPolicy overwrites whatever is there, so a grant is a read-modify-write carrying the etag
it read; when someone else wrote in between, IAM answers ABORTED and we read again. A member
already bound costs one read and no write.
"""

from __future__ import annotations

from google.api_core import exceptions as gexc

from worker.runtimes.base import TransientError
from worker.runtimes.gcp.clients import Context

INVOKER = "roles/run.invoker"
ATTEMPTS = 5


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
