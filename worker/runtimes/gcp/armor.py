"""Cloud Armor: an allowlist endpoint's CIDRs as allow rules in its own security policy.

The policy `<endpoint>-allowlist` is created the first time with a default rule that denies
everyone (403). The portal's rules allow the allowlist, at most 10 CIDRs per rule (Cloud Armor's
limit for a basic match), at priorities inside GCP_ARMOR_PRIORITY_START..END, 10 apart; it knows
its rules by their description and never touches another rule, in the band or out of it.
An empty allowlist leaves no allow rule: the default deny alone answers, so every caller is
refused, as the local runtime does. A default rule found allowing (changed by hand) is set back
to deny: without it the allowlist would restrict nobody.

Rules can only be changed one at a time (addRule, patchRule, removeRule: `patch` cannot touch
rules), so two syncs of one endpoint could interleave. They are kept apart with the policy's
fingerprint: a sync first claims the policy with a fingerprint-checked `patch` that writes its
token into the description, writes its rules, then reads the policy again. A claim refused with
412 (stale fingerprint) is re-read and retried here when only a non-portal change intervened; when
another sync claimed the policy (before or during ours), this sync raises TransientError, so the
task runs again and reads the allowlist afresh from the database: both edits land, the last one
to write having read both.
"""

from __future__ import annotations

import uuid

from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from worker.runtimes.base import PermanentError, TransientError
from worker.runtimes.gcp import compute
from worker.runtimes.gcp.clients import Context

MARK = "portal allowlist"
SYNC = "portal allowlist sync "
DEFAULT_PRIORITY = 2147483647
PER_RULE = 10
STEP = 10
CLAIM_ATTEMPTS = 3


def policy_name(endpoint: str) -> str:
    return f"{endpoint}-allowlist"


def policy_link(ctx: Context, endpoint: str) -> str:
    return f"projects/{ctx.cfg.project}/global/securityPolicies/{policy_name(endpoint)}"


def _rule(priority: int, ranges: list[str], action: str = "allow", description: str = MARK):
    return compute_v1.SecurityPolicyRule(
        priority=priority,
        action=action,
        description=description,
        match=compute_v1.SecurityPolicyRuleMatcher(
            versioned_expr="SRC_IPS_V1",
            config=compute_v1.SecurityPolicyRuleMatcherConfig(src_ip_ranges=ranges),
        ),
    )


def _ours(rule) -> bool:
    return rule.description.startswith(MARK) and not rule.description.startswith(SYNC)


def layout(ctx: Context, cidrs: tuple[str, ...], taken: set[int]) -> dict[int, list[str]]:
    """Desired portal rules: priority -> up to 10 CIDRs, skipping priorities others use (none for
    an empty allowlist: the default deny answers everyone)."""
    ranges = sorted(set(cidrs))
    chunks = [ranges[i : i + PER_RULE] for i in range(0, len(ranges), PER_RULE)]
    slots = [
        p for p in range(ctx.cfg.armor_priority_start, ctx.cfg.armor_priority_end + 1, STEP) if p not in taken
    ]
    if len(chunks) > len(slots):
        raise PermanentError(
            f"An allowlist of {len(ranges)} CIDRs needs {len(chunks)} Cloud Armor rules; the priority band "
            f"{ctx.cfg.armor_priority_start}-{ctx.cfg.armor_priority_end} holds {len(slots)}."
        )
    return dict(zip(slots, chunks, strict=False))


def default_allows(policy) -> bool:
    """Whether the policy's default rule lets traffic through (it must deny)."""
    return any(
        rule.priority == DEFAULT_PRIORITY and not rule.action.startswith("deny") for rule in policy.rules
    )


def diff(ctx: Context, policy, cidrs: tuple[str, ...]) -> tuple[list[int], list[int], list[int], dict]:
    """The portal rules to add, patch and remove (by priority) so `policy` allows exactly `cidrs`."""
    band = range(ctx.cfg.armor_priority_start, ctx.cfg.armor_priority_end + 1)
    ours = {rule.priority: rule for rule in policy.rules if rule.priority in band and _ours(rule)}
    taken = {rule.priority for rule in policy.rules if rule.priority not in ours}
    desired = layout(ctx, cidrs, taken)
    adds = [p for p in desired if p not in ours]
    patches = [
        p
        for p in desired
        if p in ours and (list(ours[p].match.config.src_ip_ranges) != desired[p] or ours[p].action != "allow")
    ]
    removes = [p for p in ours if p not in desired]
    return adds, patches, removes, desired


def apply_allowlist(ctx: Context, endpoint: str, cidrs: tuple[str, ...]) -> str:
    """Make the endpoint's policy allow exactly `cidrs`; returns what changed, for the journal."""
    client = ctx.clients.compute("SecurityPoliciesClient")
    name = policy_name(endpoint)
    project = ctx.cfg.project
    for _ in range(CLAIM_ATTEMPTS):
        policy = ctx.call(
            client.get, project=project, security_policy=name, what=f"Read {name}", accept=(gexc.NotFound,)
        )
        if policy is None:
            return _create(ctx, client, name, cidrs)
        adds, patches, removes, desired = diff(ctx, policy, cidrs)
        reset_default = default_allows(policy)
        if not (adds or patches or removes or reset_default):
            return f"{name} already allows the {len(cidrs)} address range(s)"
        token = uuid.uuid4().hex[:12]
        claimed = ctx.call(
            client.patch_unary,
            request=compute_v1.PatchSecurityPolicyRequest(
                project=project,
                security_policy=name,
                security_policy_resource=compute_v1.SecurityPolicy(
                    description=f"{SYNC}{token}", fingerprint=policy.fingerprint
                ),
                request_id=compute.request_id(),
            ),
            what=f"Claim {name}",
            accept=(gexc.PreconditionFailed,),
        )
        if claimed is None:  # 412: changed since our read
            fresh = ctx.call(client.get, project=project, security_policy=name, what=f"Read {name}")
            if fresh.description != policy.description and fresh.description.startswith(SYNC):
                raise TransientError(
                    f"Another allowlist change of {endpoint} is being applied; applying again."
                )
            continue  # someone changed something else: read again and retry the claim
        compute.wait(ctx, claimed, what=f"Claim {name}")
        for priority in adds:
            operation = ctx.call(
                client.add_rule_unary,
                project=project,
                security_policy=name,
                security_policy_rule_resource=_rule(priority, desired[priority]),
                what=f"Add allowlist rule {priority} to {name}",
            )
            compute.wait(ctx, operation, what=f"Add allowlist rule {priority}")
        for priority in patches:
            operation = ctx.call(
                client.patch_rule_unary,
                request=compute_v1.PatchRuleSecurityPolicyRequest(
                    project=project,
                    security_policy=name,
                    priority=priority,
                    security_policy_rule_resource=_rule(priority, desired[priority]),
                ),
                what=f"Update allowlist rule {priority} of {name}",
            )
            compute.wait(ctx, operation, what=f"Update allowlist rule {priority}")
        for priority in removes:
            operation = ctx.call(
                client.remove_rule_unary,
                request=compute_v1.RemoveRuleSecurityPolicyRequest(
                    project=project, security_policy=name, priority=priority
                ),
                what=f"Remove allowlist rule {priority} from {name}",
            )
            compute.wait(ctx, operation, what=f"Remove allowlist rule {priority}")
        if reset_default:
            operation = ctx.call(
                client.patch_rule_unary,
                request=compute_v1.PatchRuleSecurityPolicyRequest(
                    project=project,
                    security_policy=name,
                    priority=DEFAULT_PRIORITY,
                    security_policy_rule_resource=_default_rule(),
                ),
                what=f"Set the default rule of {name} back to deny",
            )
            compute.wait(ctx, operation, what="Set the default rule back to deny")
        after = ctx.call(client.get, project=project, security_policy=name, what=f"Read {name}")
        if after.description != f"{SYNC}{token}":
            raise TransientError(
                f"Another allowlist change of {endpoint} landed while this one was written; again."
            )
        if not desired:
            return (
                f"{name}: no allow rule left, the default rule denies every caller ({len(removes)} removed)"
            )
        return (
            f"{name}: {len(desired)} allow rule(s) for {len(cidrs)} range(s) "
            f"({len(adds)} added, {len(patches)} updated, {len(removes)} removed)"
            + ("; the default rule denies again" if reset_default else "")
        )
    raise TransientError(f"{name} kept changing while we tried to claim it; will try again.")


def _create(ctx: Context, client, name: str, cidrs: tuple[str, ...]) -> str:
    desired = layout(ctx, cidrs, {DEFAULT_PRIORITY})
    rules = [_rule(priority, ranges) for priority, ranges in desired.items()]
    rules.append(_default_rule())
    made = compute.insert(
        ctx,
        client.insert_unary,
        {
            "project": ctx.cfg.project,
            "security_policy_resource": compute_v1.SecurityPolicy(
                name=name, type_="CLOUD_ARMOR", description=f"{MARK} of a model endpoint", rules=rules
            ),
        },
        what=f"Create security policy {name}",
    )
    if not made:  # created meanwhile by another sync: apply to it like any existing policy
        raise TransientError(f"{name} was created by another change meanwhile; applying again.")
    if not desired:
        return f"{name} created with its default rule alone: every caller is denied"
    return f"{name} created: {len(desired)} allow rule(s) for {len(cidrs)} range(s), everyone else denied"


def delete_policy(ctx: Context, endpoint: str) -> bool:
    """Delete the endpoint's policy (no backend service may use it any more); True if it was there."""
    name = policy_name(endpoint)
    return compute.delete(
        ctx,
        ctx.clients.compute("SecurityPoliciesClient").delete_unary,
        {"project": ctx.cfg.project, "security_policy": name},
        what=f"Delete security policy {name}",
    )


def _default_rule():
    return _rule(DEFAULT_PRIORITY, ["*"], action="deny(403)", description="default: deny everyone else")
