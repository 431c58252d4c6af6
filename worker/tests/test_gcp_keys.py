"""API keys on the fake API Keys server: issue, find again, revoke, restore, follow the allowlist."""

import pytest
from google.cloud import api_keys_v2

from tests.fakes.api_keys import project_number
from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import PROJECT
from tests.fakes.grpc_server import quota_error
from worker.runtimes.base import AccessPolicy, KeySpec, PermanentError, TransientError

NUMBER = project_number(PROJECT)


def spec(key_id="r5", endpoint="iris-prod", cidrs=()):
    return KeySpec(
        endpoint=endpoint, key_id=key_id, display_name=f"Data science for {endpoint} (request 5)", cidrs=cidrs
    )


def test_a_key_is_restricted_to_the_endpoints_gateway_and_its_string_read_once(gcp, fakes):
    issued = gcp.issue_key(spec())

    assert fakes.gateway.methods() == ["GetApi", "CreateApi", "GetOperation"]
    assert fakes.keys.methods() == ["CreateKey", "GetOperation", "GetKeyString"]
    (create,) = fakes.keys.requests("CreateKey")
    assert create.parent == f"projects/{PROJECT}/locations/global"
    assert create.key_id == "iris-prod-r5"
    assert create.key.display_name == "Data science for iris-prod (request 5)"
    (managed,) = fakes.gateway.managed_services()
    assert [target.service for target in create.key.restrictions.api_targets] == [managed]
    assert "server_key_restrictions" not in create.key.restrictions
    assert create.key.annotations["portal-endpoint"] == "iris-prod"
    assert issued.name == f"projects/{NUMBER}/locations/global/keys/iris-prod-r5"
    assert issued.secret == fakes.keys.strings[issued.name] and issued.secret.startswith("AIza")


def test_a_key_of_an_endpoint_that_checks_addresses_carries_the_allowlist(gcp, fakes):
    gcp.issue_key(spec(cidrs=("203.0.113.0/24", "2001:db8::/32")))

    (create,) = fakes.keys.requests("CreateKey")
    assert list(create.key.restrictions.server_key_restrictions.allowed_ips) == [
        "203.0.113.0/24",
        "2001:db8::/32",
    ]


def test_issuing_the_same_key_twice_finds_the_first_one(gcp, fakes):
    first = gcp.issue_key(spec())
    second = gcp.issue_key(spec())

    assert first == second
    assert len(fakes.keys.keys) == 1
    assert fakes.keys.methods()[-3:] == ["CreateKey", "GetKey", "GetKeyString"]


def test_a_key_id_that_belongs_to_another_endpoint_is_not_taken_over(gcp, fakes):
    gcp.issue_key(spec(endpoint="iris", key_id="prod-r5"))

    with pytest.raises(PermanentError, match="belongs to something else"):
        gcp.issue_key(spec(endpoint="iris-prod", key_id="r5"))


def test_revoking_deletes_the_key_twice_is_fine_and_a_revoke_can_be_undone(gcp, fakes):
    issued = gcp.issue_key(spec())

    gcp.revoke_key("iris-prod", issued.name)
    gcp.revoke_key("iris-prod", issued.name)

    assert fakes.keys.key(issued.name).delete_time
    assert fakes.keys.live_keys() == []
    assert fakes.keys.methods()[-3:] == ["DeleteKey", "GetOperation", "DeleteKey"]

    gcp.restore_key("iris-prod", issued.name)

    assert [key.name for key in fakes.keys.live_keys()] == [issued.name]


def test_the_allowlist_follows_into_the_keys_of_both_mode_endpoints_only(gcp, fakes):
    mine = gcp.issue_key(spec("r1"))
    gcp.issue_key(spec("r2"))
    other = gcp.issue_key(spec("r3", endpoint="fraud"))
    fakes.keys.page_size_cap = 2  # the endpoint's keys span two pages
    fakes.clear_calls()

    gcp.apply_access("iris-prod", AccessPolicy(mode="both", cidrs=("198.51.100.7/32",)))

    assert fakes.keys.methods() == ["ListKeys", "ListKeys"] + ["UpdateKey", "GetOperation"] * 2
    update = fakes.keys.requests("UpdateKey")[0]
    assert list(update.update_mask.paths) == ["restrictions"]
    assert update.key.etag  # sent with the etag it read
    key = fakes.keys.key(mine.name)
    assert list(key.restrictions.server_key_restrictions.allowed_ips) == ["198.51.100.7/32"]
    assert len(key.restrictions.api_targets) == 1  # still only the gateway
    assert not fakes.keys.key(other.name).restrictions.server_key_restrictions.allowed_ips

    fakes.clear_calls()
    gcp.apply_access("iris-prod", AccessPolicy(mode="both", cidrs=("198.51.100.7/32",)))
    assert fakes.keys.methods() == ["ListKeys", "ListKeys"]


def test_switching_to_key_only_mode_lifts_the_address_restriction(gcp, fakes):
    issued = gcp.issue_key(spec(cidrs=("198.51.100.7/32",)))

    gcp.apply_access("iris-prod", AccessPolicy(mode="api_key", cidrs=("198.51.100.7/32",)))

    restrictions = fakes.keys.key(issued.name).restrictions
    assert api_keys_v2.Restrictions.pb(restrictions).WhichOneof("client_restrictions") is None
    assert len(restrictions.api_targets) == 1


def test_a_rate_limited_key_write_is_retried_no_sooner_than_thirty_seconds(gcp, fakes, clock):
    fakes.keys.fail_next(method="CreateKey", error=quota_error("WriteRequestsPerMinutePerProject"))

    with pytest.raises(TransientError) as limited:
        gcp.issue_key(spec())

    assert limited.value.retry_after >= 30
    assert clock.sleeps == []


def test_an_invalid_allowlist_entry_is_refused_with_googles_message(gcp, fakes):
    with pytest.raises(PermanentError, match="Invalid IP address or subnet in allowed_ips: 'not-an-ip'"):
        gcp.issue_key(spec(cidrs=("not-an-ip",)))


def test_an_emptied_allowlist_in_both_mode_leaves_every_key_usable_from_no_address(gcp, fakes):
    mine = gcp.issue_key(spec("r1", cidrs=("198.51.100.7/32",)))

    gcp.apply_access("iris-prod", AccessPolicy(mode="both", cidrs=()))

    key = fakes.keys.key(mine.name)
    # Google reads an empty allowed_ips as "any address": the key is tied to one no request has.
    assert list(key.restrictions.server_key_restrictions.allowed_ips) == ["255.255.255.255/32"]
    assert len(key.restrictions.api_targets) == 1


def test_a_key_issued_while_the_allowlist_is_empty_works_from_no_address(gcp, fakes):
    issued = gcp.issue_key(
        KeySpec(endpoint="iris-prod", key_id="r6", display_name="Data science", check_addresses=True)
    )

    allowed = fakes.keys.key(issued.name).restrictions.server_key_restrictions.allowed_ips
    assert list(allowed) == ["255.255.255.255/32"]
