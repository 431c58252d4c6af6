"""The Google Cloud doctor, read-only, against the fake Google servers.

A project the fakes hold as set up passes every check; a fresh one (`fakes.fresh()`: APIs
disabled, no bucket, no gateway account, no permissions) fails each with the exact gcloud command
that fixes it, and setting that part up in the fakes makes the check pass.
"""

import dataclasses
import io

import grpc
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import BUCKET, GATEWAY_SA, PROJECT
from tests.fakes.project import ENABLED_BY_DEFAULT
from worker.runtimes.base import PermanentError
from worker.runtimes.gcp.clients import Context
from worker.runtimes.gcp.doctor import (
    ACT_AS,
    BUCKET_PERMISSIONS,
    FOR_READING,
    PRINCIPAL,
    PROJECT_ROLES,
    REQUIRED_APIS,
    check_credentials,
    run_checks,
)

WORKER = f"serviceAccount:portal-worker@{PROJECT}.iam.gserviceaccount.com"
EVERY_PERMISSION = [permission for permissions in PROJECT_ROLES.values() for permission in permissions]
NAMES = (
    ["Credentials"]
    + [f"API {api}" for api in REQUIRED_APIS]
    + [
        "Artifact bucket",
        "Artifact bucket permissions",
        "Gateway service account",
        "Gateway service account use",
    ]
    + [f"Role {role}" for role in PROJECT_ROLES]
)
QUOTA_NAMES = [
    "API Gateway gateways",
    "API Gateway APIs",
    "API Gateway configs",
    "Cloud Armor SECURITY_POLICIES",
    "Cloud Armor SECURITY_POLICY_RULES",
]
NAMES += QUOTA_NAMES


def failures(checks) -> dict[str, tuple[str, str]]:
    return {check.name: (check.detail, check.fix) for check in checks if not check.ok}


def test_a_set_up_project_passes_every_check_in_order_asking_google_only_to_read(gcp, fakes):
    checks = run_checks(gcp.ctx, member=WORKER)

    assert [check.name for check in checks] == NAMES
    assert failures(checks) == {}
    assert checks[0].detail == "anonymous credentials (endpoint overrides)"
    assert all(check.fix == "" for check in checks)
    assert fakes.methods() == {
        "storage": [
            f"GET /storage/v1/b/{BUCKET}",
            f"GET /storage/v1/b/{BUCKET}/iam/testPermissions",
        ],
        "serviceusage": ["BatchGetServices"],
        "iam": ["GetServiceAccount", "TestIamPermissions"],
        "resourcemanager": [f"POST /v3/projects/{PROJECT}:testIamPermissions"],
        "apigateway": ["ListGateways", "ListApis"],  # no API yet: no configs to count
        "compute": [f"GET /compute/v1/projects/{PROJECT}"],
    }
    (batch,) = fakes.usage.requests("BatchGetServices")
    assert batch.parent == f"projects/{PROJECT}"
    assert list(batch.names) == [f"projects/{PROJECT}/services/{api}" for api in REQUIRED_APIS]
    (bucket,) = fakes.storage.requests("/testPermissions")
    assert bucket.repeated["permissions"] == list(BUCKET_PERMISSIONS)
    (account,) = fakes.iam.requests("TestIamPermissions")
    assert account.resource == f"projects/-/serviceAccounts/{GATEWAY_SA}"
    assert list(account.permissions) == [ACT_AS]
    (project,) = fakes.projects.requests(":testIamPermissions")
    assert project.json() == {"permissions": EVERY_PERMISSION}


def test_a_fresh_project_fails_each_check_with_the_command_that_fixes_it(gcp, fakes):
    fakes.fresh()

    checks = run_checks(gcp.ctx, member=WORKER)

    off = sorted(set(REQUIRED_APIS) - ENABLED_BY_DEFAULT)
    waits = {
        "iam.googleapis.com": "Gateway service account",
        "cloudresourcemanager.googleapis.com": "Project permissions",
        "apigateway.googleapis.com": "API Gateway quotas",
        "compute.googleapis.com": "Cloud Armor quotas",
    }
    assert failures(checks) == {
        **{
            f"API {api}": (
                f"{api} is not enabled"
                + (f"; the {waits[api]} checks run once it is" if api in waits else ""),
                f"gcloud services enable {api} --project={PROJECT}",
            )
            for api in off
        },
        "Artifact bucket": (
            f"gs://{BUCKET} does not exist",
            f"gcloud storage buckets create gs://{BUCKET} --project={PROJECT} --location=us-central1",
        ),
    }
    # The checks that need an API still off wait for it: no call to it is made.
    assert [check.name for check in checks if check.ok] == ["Credentials"] + [
        f"API {api}" for api in REQUIRED_APIS if api in ENABLED_BY_DEFAULT
    ]
    assert fakes.storage.methods() == [f"GET /storage/v1/b/{BUCKET}"]  # no permissions on a missing bucket
    assert fakes.methods().keys() == {"serviceusage", "storage"}


def test_with_its_apis_on_a_fresh_project_names_each_grant_and_account_it_lacks(gcp, fakes):
    fakes.fresh()
    fakes.project.disabled.clear()

    checks = run_checks(gcp.ctx, member=WORKER)

    grants = {
        f"Role {role}": (
            f"missing {', '.join(permissions)}"
            + (
                f" (the endpoint page's {FOR_READING[role]} read with it; deploys do not need it)"
                if role in FOR_READING
                else ""
            ),
            f"gcloud projects add-iam-policy-binding {PROJECT} --member={WORKER} --role={role}",
        )
        for role, permissions in PROJECT_ROLES.items()
    }
    assert failures(checks) == {
        "Artifact bucket": (
            f"gs://{BUCKET} does not exist",
            f"gcloud storage buckets create gs://{BUCKET} --project={PROJECT} --location=us-central1",
        ),
        "Gateway service account": (
            f"{GATEWAY_SA} does not exist",
            f"gcloud iam service-accounts create portal-gateway --project={PROJECT}",
        ),
        **grants,
    }
    assert "Role roles/serviceusage.apiKeysAdmin" in failures(checks)
    # API Gateway's and Cloud Armor's limits are far: nothing is made yet.
    assert [check.name for check in checks if check.ok] == [
        "Credentials",
        *[f"API {api}" for api in REQUIRED_APIS],
        *QUOTA_NAMES,
    ]
    assert fakes.iam.methods() == ["GetServiceAccount"]


def test_setting_each_part_up_makes_its_check_pass(gcp, fakes):
    fakes.fresh()
    fakes.project.disabled -= {
        "run.googleapis.com",
        "iam.googleapis.com",
        "cloudresourcemanager.googleapis.com",
    }
    fakes.storage.add_bucket(BUCKET)
    fakes.iam.add(GATEWAY_SA)
    fakes.projects.permissions.grant(*PROJECT_ROLES["roles/run.admin"], "apigateway.apis.create")

    failed = failures(run_checks(gcp.ctx, member=WORKER))

    assert "API run.googleapis.com" not in failed and "API iam.googleapis.com" not in failed
    assert "API apikeys.googleapis.com" in failed
    assert "Artifact bucket" not in failed and "Gateway service account" not in failed
    assert failed["Artifact bucket permissions"] == (
        f"missing {', '.join(BUCKET_PERMISSIONS)} on gs://{BUCKET} (granted by roles/storage.admin)",
        f"gcloud storage buckets add-iam-policy-binding gs://{BUCKET} "
        f"--member={WORKER} --role=roles/storage.admin",
    )
    assert failed["Gateway service account use"] == (
        f"missing {ACT_AS} on {GATEWAY_SA} (granted by roles/iam.serviceAccountUser)",
        f"gcloud iam service-accounts add-iam-policy-binding {GATEWAY_SA} --project={PROJECT} "
        f"--member={WORKER} --role=roles/iam.serviceAccountUser",
    )
    assert "Role roles/run.admin" not in failed
    assert failed["Role roles/apigateway.admin"][0] == "missing " + ", ".join(
        PROJECT_ROLES["roles/apigateway.admin"][1:]
    )

    fakes.storage.permissions.grant(*BUCKET_PERMISSIONS)
    fakes.iam.permissions.grant(ACT_AS)
    fakes.projects.permissions.grant(*EVERY_PERMISSION)
    fakes.project.disabled.clear()

    assert failures(run_checks(gcp.ctx, member=WORKER)) == {}


def test_a_check_google_refuses_to_answer_fails_with_googles_words_and_the_others_still_run(gcp, fakes):
    fakes.usage.fail_next(
        1,
        grpc.StatusCode.PERMISSION_DENIED,
        "Service Usage API has not been used in project portal-test before or it is disabled.",
    )

    checks = run_checks(gcp.ctx, member=WORKER)

    (detail, fix) = failures(checks)["APIs"]
    assert "Service Usage API has not been used in project portal-test" in detail
    assert "PERMISSION_DENIED" in detail and fix == ""
    assert len(failures(checks)) == 1
    assert [check.name for check in checks] == ["Credentials", "APIs", *NAMES[len(REQUIRED_APIS) + 1 :]]


def test_fixes_name_a_placeholder_principal_when_the_credentials_name_none(gcp, fakes):
    fakes.storage.permissions.revoke_all()

    (_, fix) = failures(run_checks(gcp.ctx))["Artifact bucket permissions"]

    assert f"--member={PRINCIPAL} " in fix


@pytest.fixture
def real_credentials(gcp):
    """A context whose Cloud Run client would use Application Default Credentials."""
    overrides = {api: url for api, url in gcp.ctx.cfg.endpoint_overrides.items() if api != "run"}
    return Context(dataclasses.replace(gcp.ctx.cfg, endpoint_overrides=overrides))


def test_user_credentials_need_a_quota_project(real_credentials, monkeypatch):
    import google.auth
    from google.oauth2 import credentials as user_credentials

    without = user_credentials.Credentials(token="t")
    monkeypatch.setattr(google.auth, "default", lambda: (without, None))
    check, member = check_credentials(real_credentials)
    assert (check.ok, check.fix) == (False, f"gcloud auth application-default set-quota-project {PROJECT}")
    assert member == PRINCIPAL

    monkeypatch.setattr(google.auth, "default", lambda: (without.with_quota_project(PROJECT), None))
    check, _ = check_credentials(real_credentials)
    assert (check.ok, check.detail) == (True, f"user credentials, quota project {PROJECT}")


def test_service_account_credentials_are_the_member_the_fixes_grant_to(real_credentials, monkeypatch):
    import google.auth
    from google.auth import exceptions as auth_exc

    class ServiceAccountCredentials:
        service_account_email = f"portal-worker@{PROJECT}.iam.gserviceaccount.com"

    monkeypatch.setattr(google.auth, "default", lambda: (ServiceAccountCredentials(), PROJECT))
    check, member = check_credentials(real_credentials)
    assert check.ok and member == WORKER

    def missing():
        raise auth_exc.DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", missing)
    check, _ = check_credentials(real_credentials)
    assert (check.ok, check.fix) == (False, "gcloud auth application-default login")
    assert "Your default credentials were not found." in check.detail


def test_the_command_prints_every_check_and_succeeds_on_a_set_up_project(gcp_settings, fakes):
    out = io.StringIO()

    call_command("gcp_doctor", "--member", WORKER, stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0] == f"Google Cloud project {PROJECT}:"
    assert lines[1] == "  PASS  Credentials: anonymous credentials (endpoint overrides)"
    assert [line.split(":")[0].split("PASS  ")[1] for line in lines[1:-1]] == NAMES
    assert lines[-1] == f"All {len(NAMES)} checks passed."


def test_the_command_prints_each_failure_with_its_fix_and_fails(gcp_settings, fakes):
    fakes.fresh()
    fakes.project.disabled = {"apikeys.googleapis.com"}
    out = io.StringIO()

    with pytest.raises(CommandError, match=rf"^14 of {len(NAMES) - 2} checks failed\.$"):
        call_command("gcp_doctor", "--member", WORKER, stdout=out)

    text = out.getvalue()
    assert "  PASS  API run.googleapis.com: enabled\n" in text
    assert (
        "  FAIL  API apikeys.googleapis.com: apikeys.googleapis.com is not enabled\n"
        f"        fix: gcloud services enable apikeys.googleapis.com --project={PROJECT}\n"
    ) in text
    assert (
        f"  FAIL  Artifact bucket: gs://{BUCKET} does not exist\n"
        f"        fix: gcloud storage buckets create gs://{BUCKET} "
        f"--project={PROJECT} --location=us-central1\n"
    ) in text
    run_admin = ", ".join(PROJECT_ROLES["roles/run.admin"])
    assert (
        f"  FAIL  Role roles/run.admin: missing {run_admin}\n"
        f"        fix: gcloud projects add-iam-policy-binding {PROJECT} "
        f"--member={WORKER} --role=roles/run.admin\n"
    ) in text


def test_api_gateways_limits_are_reported_with_room_left_and_fail_when_reached(gcp, fakes):
    from google.cloud import apigateway_v1 as gw

    from worker.runtimes.gcp.doctor import APIS_PER_PROJECT, CONFIGS_PER_API

    parent = f"projects/{PROJECT}/locations/global"
    for index in range(APIS_PER_PROJECT - 1):
        fakes.gateway.apis[f"{parent}/apis/api-{index}"] = gw.Api(name=f"{parent}/apis/api-{index}")
    busiest = f"{parent}/apis/api-7"
    for index in range(CONFIGS_PER_API - 1):
        fakes.gateway.configs[f"{busiest}/configs/c{index}"] = gw.ApiConfig(
            name=f"{busiest}/configs/c{index}"
        )

    checks = {check.name: check for check in run_checks(gcp.ctx)}
    assert checks["API Gateway APIs"].ok and checks["API Gateway APIs"].detail == "49 of 50 APIs"
    assert checks["API Gateway configs"].detail == "at most 99 of 100 configs in an API"

    fakes.gateway.apis[f"{parent}/apis/api-last"] = gw.Api(name=f"{parent}/apis/api-last")
    fakes.gateway.configs[f"{busiest}/configs/c-last"] = gw.ApiConfig(name=f"{busiest}/configs/c-last")
    checks = {check.name: check for check in run_checks(gcp.ctx)}
    assert failures(checks.values()) == {
        "API Gateway APIs": (
            "50 of 50 APIs: no API-key endpoint can be added (delete one no longer used)",
            f"gcloud api-gateway apis delete API_ID --project={PROJECT}",
        ),
        "API Gateway configs": (
            f"{busiest} hold 100 configs: their next deploy cannot add one",
            f"gcloud api-gateway api-configs delete CONFIG_ID --api=api-7 --project={PROJECT}",
        ),
    }


def test_gateways_per_region_are_counted_in_the_gateway_region_only(gcp, fakes):
    from google.cloud import apigateway_v1 as gw

    from worker.runtimes.gcp.doctor import GATEWAYS_PER_REGION

    for region, count in (("us-central1", GATEWAYS_PER_REGION - 1), ("europe-west1", 3)):
        parent = f"projects/{PROJECT}/locations/{region}"
        for index in range(count):
            fakes.gateway.gateways[f"{parent}/gateways/gw-{index}"] = gw.Gateway(
                name=f"{parent}/gateways/gw-{index}"
            )
    check = {check.name: check for check in run_checks(gcp.ctx)}["API Gateway gateways"]
    assert (check.ok, check.detail) == (True, "49 of 50 gateways in us-central1")

    parent = f"projects/{PROJECT}/locations/us-central1"
    fakes.gateway.gateways[f"{parent}/gateways/gw-last"] = gw.Gateway(name=f"{parent}/gateways/gw-last")
    assert failures(run_checks(gcp.ctx))["API Gateway gateways"] == (
        "50 of 50 gateways in us-central1: no API-key endpoint can be added (delete one no longer used)",
        f"gcloud api-gateway gateways delete GATEWAY_ID --location=us-central1 --project={PROJECT}",
    )


def test_cloud_armor_quotas_are_read_from_the_project_and_fail_without_room_for_an_allowlist(gcp, fakes):
    from worker.runtimes.gcp import armor

    fakes.compute.quota_limits = {"SECURITY_POLICIES": 2.0, "SECURITY_POLICY_RULES": 3.0}
    armor.apply_allowlist(
        gcp.ctx, "first", ("10.0.0.0/8", "192.168.0.0/16")
    )  # one allow rule, the default deny
    checks = {check.name: check for check in run_checks(gcp.ctx)}
    assert checks["Cloud Armor SECURITY_POLICIES"].detail == "1 of 2 used"
    rules = checks["Cloud Armor SECURITY_POLICY_RULES"]
    assert (rules.ok, rules.detail) == (
        False,
        "2 of 3 used: "
        "an allowlist endpoint needs 2 more (delete one no longer used, or ask for more on the console's "
        "Quotas page)",
    )
    assert rules.fix == (
        f"gcloud compute security-policies rules delete PRIORITY --security-policy=POLICY --project={PROJECT}"
    )

    # The doctor said so: the next allowlist is refused by Compute, in its words.
    with pytest.raises(PermanentError, match="Quota 'SECURITY_POLICY_RULES' exceeded.  Limit: 3.0 globally"):
        armor.apply_allowlist(gcp.ctx, "second", ("10.0.0.0/8",))
