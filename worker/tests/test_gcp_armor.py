"""Cloud Armor allowlists and the HTTPS load balancer, on the fake Compute REST server."""

import threading

import pytest
from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import PROJECT, make_spec, run_steps
from worker.runtimes.base import AccessPolicy, PermanentError, TransientError
from worker.runtimes.gcp import armor, compute

POLICY = "iris-prod-allowlist"
P = f"/compute/v1/projects/{PROJECT}/global/securityPolicies"


def cidrs(n: int, base: str = "203.0.113") -> tuple[str, ...]:
    return tuple(f"{base}.{i}/32" for i in range(n))


def allow(gcp, *ranges, mode="ip_allowlist"):
    gcp.apply_access("iris-prod", AccessPolicy(mode=mode, cidrs=tuple(ranges)))


def portal_rules(fakes) -> dict[int, list[str]]:
    return {
        priority: rule["match"]["config"]["srcIpRanges"]
        for priority, rule in fakes.compute.rules(POLICY).items()
        if rule["description"] == "portal allowlist"
    }


def test_the_first_allowlist_creates_the_policy_with_a_default_deny(gcp, fakes):
    allow(gcp, "198.51.100.0/24", "203.0.113.7/32")

    assert fakes.compute.methods() == [f"GET {P}/{POLICY}", f"POST {P}"]
    rules = fakes.compute.rules(POLICY)
    assert rules[2147483647]["action"] == "deny(403)"
    assert rules[2147483647]["match"]["config"]["srcIpRanges"] == ["*"]
    assert rules[1000]["action"] == "allow"
    assert rules[1000]["match"] == {
        "versionedExpr": "SRC_IPS_V1",
        "config": {"srcIpRanges": ["198.51.100.0/24", "203.0.113.7/32"]},
    }
    assert fakes.compute.requests(f"POST {P}")[0].query["requestId"]


def test_eleven_cidrs_make_two_rules_ten_priorities_apart(gcp, fakes):
    allow(gcp, *cidrs(11))

    rules = portal_rules(fakes)
    assert sorted(rules) == [1000, 1010]
    assert len(rules[1000]) == 10 and len(rules[1010]) == 1


def test_the_fake_refuses_eleven_cidrs_in_one_rule_as_google_does(gcp, fakes):
    allow(gcp, "198.51.100.0/24")
    client = gcp.ctx.clients.compute("SecurityPoliciesClient")

    with pytest.raises(gexc.BadRequest, match="the limit is 10 per rule"):
        client.add_rule_unary(
            project=PROJECT,
            security_policy=POLICY,
            security_policy_rule_resource=armor._rule(1500, list(cidrs(11))),
        )


def test_an_edit_changes_only_the_rules_that_differ_and_an_unchanged_list_reads_once(gcp, fakes):
    allow(gcp, *cidrs(11))
    fakes.clear_calls()

    allow(gcp, *cidrs(11), "198.51.100.9/32")  # sorts into the first chunk: both rules shift

    methods = fakes.compute.methods()
    assert methods[:2] == [f"GET {P}/{POLICY}", f"PATCH {P}/{POLICY}"]
    assert methods.count(f"POST {P}/{POLICY}/patchRule") == 2
    assert f"POST {P}/{POLICY}/addRule" not in methods
    assert methods[-1] == f"GET {P}/{POLICY}"
    patch = fakes.compute.requests(f"PATCH {P}/{POLICY}")[0].json()
    assert patch["fingerprint"]  # the claim carries the fingerprint it read
    assert fakes.compute.requests("patchRule")[0].query["priority"] == "1000"
    assert sum(len(v) for v in portal_rules(fakes).values()) == 12

    fakes.clear_calls()
    allow(gcp, *cidrs(11), "198.51.100.9/32")
    assert fakes.compute.methods() == [f"GET {P}/{POLICY}"]


def test_shrinking_the_allowlist_removes_the_rules_no_longer_needed(gcp, fakes):
    allow(gcp, *cidrs(25))
    assert sorted(portal_rules(fakes)) == [1000, 1010, 1020]

    allow(gcp, "198.51.100.0/24")

    assert portal_rules(fakes) == {1000: ["198.51.100.0/24"]}
    assert f"POST {P}/{POLICY}/removeRule" in fakes.compute.methods()


def test_rules_the_portal_did_not_make_are_never_touched(gcp, fakes):
    allow(gcp, "198.51.100.0/24")
    fakes.compute.add_foreign_rule(POLICY, 1010, ["192.0.2.0/24"])  # inside our band
    fakes.compute.add_foreign_rule(POLICY, 100, ["192.0.2.66/32"])  # outside it

    allow(gcp, *cidrs(15))

    rules = fakes.compute.rules(POLICY)
    assert rules[1010]["description"] == "made by the ops team"
    assert rules[1010]["match"]["config"]["srcIpRanges"] == ["192.0.2.0/24"]
    assert rules[100]["description"] == "made by the ops team"
    assert sorted(portal_rules(fakes)) == [1000, 1020]


def test_an_allowlist_larger_than_the_band_is_refused_before_any_write(gcp, fakes, gcp_settings):
    gcp.ctx.cfg.__dict__["armor_priority_end"] = 1010  # a band of two rules: 20 CIDRs

    with pytest.raises(PermanentError, match="needs 3 Cloud Armor rules"):
        allow(gcp, *cidrs(21))
    assert fakes.compute.methods() == [f"GET {P}/{POLICY}"]


def test_a_first_empty_allowlist_makes_a_policy_with_its_default_deny_alone(gcp, fakes):
    allow(gcp)

    rules = fakes.compute.rules(POLICY)
    assert list(rules) == [2147483647]
    assert rules[2147483647]["action"] == "deny(403)"
    assert rules[2147483647]["match"]["config"]["srcIpRanges"] == ["*"]


def test_an_emptied_allowlist_leaves_the_default_deny_alone_and_foreign_rules_in_place(gcp, fakes):
    allow(gcp, *cidrs(15))
    fakes.compute.add_foreign_rule(POLICY, 100, ["192.0.2.66/32"])
    assert sorted(portal_rules(fakes)) == [1000, 1010]
    fakes.clear_calls()

    allow(gcp)

    rules = fakes.compute.rules(POLICY)
    assert sorted(rules) == [100, 2147483647]
    assert rules[2147483647]["action"] == "deny(403)"
    assert rules[100]["description"] == "made by the ops team"
    assert fakes.compute.methods().count(f"POST {P}/{POLICY}/removeRule") == 2
    assert f"POST {P}/{POLICY}/addRule" not in fakes.compute.methods()

    fakes.clear_calls()
    allow(gcp)  # nothing left to do: one read
    assert fakes.compute.methods() == [f"GET {P}/{POLICY}"]


def test_a_default_rule_changed_to_allow_is_set_back_to_deny(gcp, fakes):
    allow(gcp, "198.51.100.0/24")
    client = gcp.ctx.clients.compute("SecurityPoliciesClient")
    operation = client.patch_rule_unary(  # someone opens the endpoint up by hand, in the console
        request=compute_v1.PatchRuleSecurityPolicyRequest(
            project=PROJECT,
            security_policy=POLICY,
            priority=2147483647,
            security_policy_rule_resource=armor._rule(2147483647, ["*"], action="allow", description="x"),
        )
    )
    compute.wait(gcp.ctx, operation, what="Open the default rule")
    assert fakes.compute.rules(POLICY)[2147483647]["action"] == "allow"

    allow(gcp, "198.51.100.0/24")

    assert fakes.compute.rules(POLICY)[2147483647]["action"] == "deny(403)"
    assert portal_rules(fakes) == {1000: ["198.51.100.0/24"]}


def test_a_stale_fingerprint_from_a_foreign_change_is_read_again_and_retried(gcp, fakes):
    allow(gcp, "198.51.100.0/24")
    fakes.clear_calls()
    fakes.compute.fail_next(1, 412, "Invalid fingerprint.", reason="conditionNotMet", route="PATCH")

    allow(gcp, "198.51.100.0/24", "192.0.2.0/24")

    assert fakes.compute.methods()[:4] == [
        f"GET {P}/{POLICY}",
        f"PATCH {P}/{POLICY}",
        f"GET {P}/{POLICY}",
        f"GET {P}/{POLICY}",
    ]
    assert portal_rules(fakes) == {1000: ["192.0.2.0/24", "198.51.100.0/24"]}


def test_two_concurrent_allowlist_edits_both_land(gcp, fakes, monkeypatch):
    """Edit A (adds X) and edit B (adds Y) race; the database has both once B's task reads it."""
    database = {"cidrs": ("198.51.100.0/24",)}
    allow(gcp, *database["cidrs"])

    original_wait = armor.compute.wait
    race = threading.Event()

    def b_lands_while_a_writes(ctx, operation, *, what, region=None):
        original_wait(ctx, operation, what=what, region=region)
        if what.startswith("Claim") and not race.is_set():  # A has claimed; now B runs start to end
            race.set()
            database["cidrs"] += ("192.0.2.2/32",)  # edit B commits, its task reads both edits
            allow(gcp, *database["cidrs"])

    monkeypatch.setattr(armor.compute, "wait", b_lands_while_a_writes)
    database["cidrs"] += ("192.0.2.1/32",)
    a_read = database["cidrs"]  # edit A's task read the database before edit B committed

    with pytest.raises(TransientError, match="landed while this one was written"):
        allow(gcp, *a_read)
    allow(gcp, *database["cidrs"])  # A's task retries: it reads the database again

    assert portal_rules(fakes) == {1000: ["192.0.2.1/32", "192.0.2.2/32", "198.51.100.0/24"]}


def test_a_failed_operation_fails_with_its_error_not_silently(gcp, fakes):
    fakes.compute.fail_operation_next(
        "QUOTA_EXCEEDED", "Quota 'SECURITY_POLICY_RULES' exceeded. Limit: 200.0"
    )

    with pytest.raises(PermanentError, match="QUOTA_EXCEEDED: Quota 'SECURITY_POLICY_RULES' exceeded"):
        allow(gcp, "198.51.100.0/24")


def test_operations_are_polled_on_our_endpoint_until_done(gcp, fakes, clock):
    fakes.compute.operation_polls = 3

    allow(gcp, "198.51.100.0/24")

    polls = [m for m in fakes.compute.methods() if "/global/operations/" in m]
    assert len(polls) == 3 and all(m.startswith("GET ") for m in polls)
    assert clock.sleeps == [2.0, 2.0]


def test_a_dropped_connection_to_compute_is_retried(gcp, fakes, clock):
    fakes.compute.fail_next(1, 0, route="GET")

    allow(gcp, "198.51.100.0/24")

    assert len(clock.sleeps) == 1
    assert "198.51.100.0/24" in portal_rules(fakes)[1000]


def test_an_allowlist_deploy_builds_the_load_balancer_chain_once(gcp, fakes, artifact):
    spec = make_spec(artifact, mode="ip_allowlist", cidrs=("198.51.100.0/24",), region="europe-west1")

    names = [step.name for step in gcp.deploy_steps(spec)]
    first = run_steps(gcp, spec)

    assert names == [
        "preconditions",
        "service_account",
        "artifact",
        "allowlist",
        "revision",
        "revision_ready",
        "load_balancer",
    ]
    resources = fakes.compute.resources
    backend = resources["global/backendServices/iris-prod-backend"]
    assert backend["securityPolicy"].endswith("/global/securityPolicies/iris-prod-allowlist")
    assert backend["loadBalancingScheme"] == "EXTERNAL_MANAGED"
    neg = resources["regions/europe-west1/networkEndpointGroups/iris-prod-neg"]
    assert neg["networkEndpointType"] == "SERVERLESS" and neg["cloudRun"] == {"service": "iris-prod"}
    assert resources["global/sslCertificates/iris-prod-cert"]["managed"]["domains"] == [
        "iris-prod.models.example.com"
    ]
    rule = resources["global/forwardingRules/iris-prod-https"]
    assert rule["portRange"] == "443" and rule["target"].endswith("/targetHttpsProxies/iris-prod-proxy")
    assert first["url"] == "https://iris-prod.models.example.com"
    assert first["lb_address"] == resources["global/addresses/iris-prod-ip"]["address"]

    fakes.clear_calls()
    run_steps(gcp, make_spec(artifact, deployment_id=2, mode="ip_allowlist", cidrs=spec.access.cidrs,
                             region="europe-west1", previous=first))  # fmt: skip
    assert fakes.compute.methods() == [f"GET {P}/{POLICY}"]  # the allowlist check; the chain is reused


def test_a_resumed_load_balancer_step_skips_what_exists(gcp, fakes, artifact):
    spec = make_spec(artifact, mode="ip_allowlist", cidrs=("198.51.100.0/24",))
    resources = run_steps(gcp, spec, only=("allowlist", "revision", "revision_ready"))
    fakes.compute.fail_next(3, 503, route="POST /compute/v1/projects/portal-test/global/targetHttpsProxies")
    steps = {step.name: step for step in gcp.deploy_steps(spec)}

    with pytest.raises(TransientError):  # the worker gives up on this try half way through the chain
        steps["load_balancer"].run(resources)
    assert "global/targetHttpsProxies/iris-prod-proxy" not in fakes.compute.resources
    fakes.clear_calls()
    steps["load_balancer"].run(resources)

    inserts = [m.rsplit("/", 1)[-1] for m in fakes.compute.methods() if m.startswith("POST")]
    assert inserts == [
        "addresses",
        "sslCertificates",
        "networkEndpointGroups",
        "backendServices",
        "urlMaps",
        "targetHttpsProxies",
        "forwardingRules",
    ]
    assert len([k for k in fakes.compute.resources if k.startswith("global/forwardingRules/")]) == 1
    assert len([k for k in fakes.compute.resources if k.startswith("global/addresses/")]) == 1


def test_policy_patch_cannot_carry_rules_in_the_fake_either(gcp, fakes):
    allow(gcp, "198.51.100.0/24")
    client = gcp.ctx.clients.compute("SecurityPoliciesClient")
    policy = client.get(project=PROJECT, security_policy=POLICY)

    with pytest.raises(gexc.BadRequest, match="cannot be used to update the rules"):
        client.patch_unary(
            project=PROJECT,
            security_policy=POLICY,
            security_policy_resource=compute_v1.SecurityPolicy(
                fingerprint=policy.fingerprint, rules=policy.rules
            ),
        )
