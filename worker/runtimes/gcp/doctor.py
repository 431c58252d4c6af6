"""Is the Google Cloud project ready for the runtime? Read-only checks, each with the command that fixes it.

    checks = run_checks(Context(GcpConfig.from_settings()))
    for check in checks: print("PASS" if check.ok else "FAIL", check.name, check.detail, check.fix)

In order: Application Default Credentials (and, for user credentials, their quota project); the
Google APIs the runtime calls, enabled (Service Usage); the artifact bucket, there and usable
(Cloud Storage testIamPermissions); the gateway's service account, there and usable by the worker
(iam.serviceAccounts.actAs); and the project permissions a deploy needs (Resource Manager
testIamPermissions), missing ones grouped by the predefined role that grants them. Nothing here
changes anything; a check that cannot ask Google fails with what Google answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from worker.runtimes.base import Change, PermanentError, RuntimeFailure
from worker.runtimes.gcp import gateway
from worker.runtimes.gcp.clients import Context

#: The APIs the runtime calls, or that API Gateway needs to serve and check keys.
REQUIRED_APIS = (
    "run.googleapis.com",
    "apigateway.googleapis.com",
    "servicemanagement.googleapis.com",
    "servicecontrol.googleapis.com",
    "apikeys.googleapis.com",
    "serviceusage.googleapis.com",
    "compute.googleapis.com",
    "iam.googleapis.com",
    "storage.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    # Read by the endpoint page for its charts and its logs (on in a new project).
    "monitoring.googleapis.com",
    "logging.googleapis.com",
)

#: What the worker does with the artifact bucket: objects in, out and away, and reader grants.
BUCKET_ROLE = "roles/storage.admin"
BUCKET_PERMISSIONS = (
    "storage.objects.create",
    "storage.objects.get",
    "storage.objects.delete",
    "storage.buckets.getIamPolicy",
    "storage.buckets.setIamPolicy",
)

#: Deploying as the gateway's service account (API Gateway calls Cloud Run as it).
ACT_AS_ROLE = "roles/iam.serviceAccountUser"
ACT_AS = "iam.serviceAccounts.actAs"

#: The project permissions a deploy and a teardown use, by the predefined role that grants them.
PROJECT_ROLES: dict[str, tuple[str, ...]] = {
    "roles/run.admin": (
        "run.services.create",
        "run.services.update",
        "run.services.delete",
        "run.services.get",
        "run.services.getIamPolicy",
        "run.services.setIamPolicy",
    ),
    "roles/iam.serviceAccountAdmin": (
        "iam.serviceAccounts.create",
        "iam.serviceAccounts.delete",
        "iam.serviceAccounts.get",
    ),
    # Each endpoint's Cloud Run service runs as its own account, made by the deploy.
    ACT_AS_ROLE: (ACT_AS,),
    "roles/apigateway.admin": (
        "apigateway.apis.create",
        "apigateway.apis.get",
        "apigateway.apis.delete",
        "apigateway.apiconfigs.create",
        "apigateway.apiconfigs.get",
        "apigateway.apiconfigs.list",
        "apigateway.apiconfigs.delete",
        "apigateway.gateways.create",
        "apigateway.gateways.get",
        "apigateway.gateways.update",
        "apigateway.gateways.delete",
    ),
    # API Keys has no roles of its own: Google documents API Keys Admin under Service Usage.
    "roles/serviceusage.apiKeysAdmin": (
        "apikeys.keys.create",
        "apikeys.keys.delete",
        "apikeys.keys.get",
        "apikeys.keys.getKeyString",
        "apikeys.keys.list",
        "apikeys.keys.undelete",
        "apikeys.keys.update",
    ),
    "roles/compute.securityAdmin": (
        "compute.securityPolicies.create",
        "compute.securityPolicies.delete",
        "compute.securityPolicies.get",
        "compute.securityPolicies.update",
    ),
    "roles/compute.loadBalancerAdmin": (
        "compute.globalAddresses.create",
        "compute.sslCertificates.create",
        "compute.backendServices.create",
        "compute.urlMaps.create",
        "compute.targetHttpsProxies.create",
        "compute.globalForwardingRules.create",
    ),
    "roles/serviceusage.serviceUsageAdmin": ("serviceusage.services.enable",),
    "roles/servicemanagement.admin": ("servicemanagement.services.bind",),
    # The endpoint page's charts (Cloud Run's request metrics) and its log (the revision's entries).
    "roles/monitoring.viewer": ("monitoring.timeSeries.list",),
    "roles/logging.viewer": ("logging.logEntries.list",),
}

#: What only the endpoint page's charts and logs read: a failed check says what to fix, but a
#: deploy does not need it, so it stops no deploy.
FOR_READING = {
    "monitoring.googleapis.com": "charts",
    "logging.googleapis.com": "logs",
    "roles/monitoring.viewer": "charts",
    "roles/logging.viewer": "logs",
}

#: API Gateway's limits ("Quotas and limits"): an API-key endpoint has one API and one gateway, each
#: deploy a config.
APIS_PER_PROJECT = 50
CONFIGS_PER_API = 100
GATEWAYS_PER_REGION = 50

#: Cloud Armor's global quotas (Compute's project quotas) an allowlist endpoint takes from: one
#: policy, and at least two rules (an allow and the default deny).
ARMOR_NEEDS = {"SECURITY_POLICIES": 1, "SECURITY_POLICY_RULES": 2}

#: Stands for the worker's principal in a fix when the credentials do not name it.
PRINCIPAL = "PRINCIPAL"


@dataclass(frozen=True)
class Check:
    """One check's outcome; `fix` is the gcloud command that makes it pass ("" when it passes)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    blocks: bool = True  # whether a deploy needs it to pass (`unmet`)


def run_checks(ctx: Context, *, member: str = "", quotas: bool = True) -> list[Check]:
    """Every check, in order. `member` ("serviceAccount:...", "user:...") is whom the fixes grant
    roles to; by default the service account of the credentials, or PRINCIPAL. `quotas`: the
    headroom under API Gateway's limits too (one read per API: the command and the page ask for
    it, a deploy's project check does not)."""
    credentials, principal = check_credentials(ctx)
    member = member or principal
    checks = [credentials]
    for name, results in (
        ("APIs", lambda: check_apis(ctx)),
        ("Artifact bucket", lambda: check_bucket(ctx, member)),
        ("Gateway service account", lambda: check_gateway_account(ctx, member)),
        ("Project permissions", lambda: check_project_permissions(ctx, member)),
        *([("API Gateway quotas", lambda: check_gateway_quotas(ctx))] if quotas else []),
        *([("Cloud Armor quotas", lambda: check_armor_quotas(ctx))] if quotas else []),
    ):
        if ASKS[name] in disabled(checks):  # its API check says what to do first
            continue
        try:
            for check in results():
                checks.append(check)
        except RuntimeFailure as exc:  # Google could not be asked: say what it answered
            checks.append(Check(name, False, str(exc)))
    return checks


#: The API each group of checks asks; while it is off, the group waits (its API check fails).
ASKS = {
    "APIs": "serviceusage.googleapis.com",
    "Artifact bucket": "storage.googleapis.com",
    "Gateway service account": "iam.googleapis.com",
    "Project permissions": "cloudresourcemanager.googleapis.com",
    "API Gateway quotas": "apigateway.googleapis.com",
    "Cloud Armor quotas": "compute.googleapis.com",
}


def disabled(checks: list[Check]) -> set[str]:
    """The APIs the checks so far found not enabled."""
    return {
        check.name.removeprefix("API ") for check in checks if check.name.startswith("API ") and not check.ok
    }


def check_credentials(ctx: Context) -> tuple[Check, str]:
    """Application Default Credentials, and the member they are; user credentials need a quota project."""
    import google.auth
    from google.auth import exceptions as auth_exc
    from google.oauth2 import credentials as user_credentials

    name = "Credentials"
    if ctx.clients.anonymous:
        return Check(name, True, "anonymous credentials (endpoint overrides)"), PRINCIPAL
    try:
        credentials, project = google.auth.default()
    except auth_exc.DefaultCredentialsError as exc:
        return Check(name, False, str(exc), "gcloud auth application-default login"), PRINCIPAL
    email = getattr(credentials, "service_account_email", "")
    principal = f"serviceAccount:{email}" if "@" in email else PRINCIPAL
    if not isinstance(credentials, user_credentials.Credentials):
        return Check(name, True, f"{type(credentials).__name__} {email}, project {project}"), principal
    if not credentials.quota_project_id:
        detail = "user credentials without a quota project: Google refuses some APIs' calls"
        fix = f"gcloud auth application-default set-quota-project {ctx.cfg.project}"
        return Check(name, False, detail, fix), principal
    return Check(name, True, f"user credentials, quota project {credentials.quota_project_id}"), principal


def check_apis(ctx: Context) -> Iterator[Check]:
    """One result per required API: enabled in the project, or the command that enables it."""
    project = ctx.cfg.project
    answer = ctx.call(
        ctx.clients.usage().batch_get_services,
        request={
            "parent": f"projects/{project}",
            "names": [f"projects/{project}/services/{api}" for api in REQUIRED_APIS],
        },
        what="Read which APIs the project has enabled",
    )
    from google.cloud import service_usage_v1

    enabled = {
        service.name.rsplit("/", 1)[-1]
        for service in answer.services
        if service.state == service_usage_v1.State.ENABLED
    }
    for api in REQUIRED_APIS:
        if api in enabled:
            yield Check(f"API {api}", True, "enabled")
        else:
            fix = f"gcloud services enable {api} --project={project}"
            waiting = [name for name, asks in ASKS.items() if asks == api]
            then = f"; the {waiting[0]} checks run once it is" if waiting else ""
            if api in FOR_READING:
                then = f"; the endpoint page's {FOR_READING[api]} stay empty until it is"
                then += " (deploys do not need it)"
            yield Check(
                f"API {api}", False, f"{api} is not enabled{then}", fix, blocks=api not in FOR_READING
            )


def check_bucket(ctx: Context, member: str) -> Iterator[Check]:
    """The artifact bucket exists, and the worker holds what it does with it."""
    name, project = ctx.cfg.artifact_bucket, ctx.cfg.project
    bucket = ctx.call(ctx.clients.storage().lookup_bucket, name, what=f"Read gs://{name}")
    if bucket is None:
        region = ctx.cfg.gateway_region
        fix = f"gcloud storage buckets create gs://{name} --project={project} --location={region}"
        yield Check("Artifact bucket", False, f"gs://{name} does not exist", fix)
        return
    yield Check("Artifact bucket", True, f"gs://{name} exists")
    held = ctx.call(
        bucket.test_iam_permissions, list(BUCKET_PERMISSIONS), what=f"Test permissions on gs://{name}"
    )
    missing = [permission for permission in BUCKET_PERMISSIONS if permission not in held]
    if missing:
        detail = f"missing {', '.join(missing)} on gs://{name} (granted by {BUCKET_ROLE})"
        fix = (
            f"gcloud storage buckets add-iam-policy-binding gs://{name} "
            f"--member={member} --role={BUCKET_ROLE}"
        )
        yield Check("Artifact bucket permissions", False, detail, fix)
    else:
        yield Check("Artifact bucket permissions", True, f"the worker can use gs://{name}")


def check_gateway_account(ctx: Context, member: str) -> Iterator[Check]:
    """The gateway's service account exists, and the worker may act as it."""
    from google.api_core import exceptions as gexc

    email = ctx.cfg.gateway_service_account
    account_id, _, domain = email.partition("@")
    owner = domain.removesuffix(".iam.gserviceaccount.com")
    resource = f"projects/-/serviceAccounts/{email}"
    iam = ctx.clients.iam_admin()
    account = ctx.call(iam.get_service_account, name=resource, what=f"Read {email}", accept=(gexc.NotFound,))
    if account is None:
        yield Check(
            "Gateway service account",
            False,
            f"{email} does not exist",
            f"gcloud iam service-accounts create {account_id} --project={owner}",
        )
        return
    yield Check("Gateway service account", True, f"{email} exists")
    answer = ctx.call(
        iam.test_iam_permissions, resource=resource, permissions=[ACT_AS], what=f"Test permissions on {email}"
    )
    if ACT_AS in answer.permissions:
        yield Check("Gateway service account use", True, f"the worker may act as {email}")
    else:
        yield Check(
            "Gateway service account use",
            False,
            f"missing {ACT_AS} on {email} (granted by {ACT_AS_ROLE})",
            f"gcloud iam service-accounts add-iam-policy-binding {email} --project={owner} "
            f"--member={member} --role={ACT_AS_ROLE}",
        )


def check_project_permissions(ctx: Context, member: str) -> Iterator[Check]:
    """One result per role: the worker holds its permissions on the project, or the grant to run."""
    project = ctx.cfg.project
    asked = [permission for permissions in PROJECT_ROLES.values() for permission in permissions]
    held = set(
        ctx.call(
            ctx.clients.projects().test_iam_permissions,
            f"projects/{project}",
            asked,
            what=f"Test permissions on project {project}",
        )
    )
    for role, permissions in PROJECT_ROLES.items():
        missing = [permission for permission in permissions if permission not in held]
        if missing:
            reading = FOR_READING.get(role)
            why = f" (the endpoint page's {reading} read with it; deploys do not need it)" if reading else ""
            yield Check(
                f"Role {role}",
                False,
                f"missing {', '.join(missing)}{why}",
                f"gcloud projects add-iam-policy-binding {project} --member={member} --role={role}",
                blocks=reading is None,
            )
        else:
            yield Check(f"Role {role}", True, "held")


def unmet(checks: list[Check]) -> list[Check]:
    """The failed checks that say what to do: a precondition a deploy cannot do without. A check
    Google could not answer has no fix, and does not stop a deploy (its steps will meet it); nor
    does one of what only the endpoint page reads."""
    return [check for check in checks if not check.ok and check.fix and check.blocks]


def described(check: Check) -> str:
    return f"{check.name}: {check.detail}" + (f" (fix: {check.fix})" if check.fix else "")


def require_ready(ctx: Context) -> str:
    """Raise PermanentError naming every unmet precondition, before a deploy makes anything;
    a project found ready is trusted for GCP_READY_CHECK_SECONDS."""
    if ctx.clock() < ctx.ready_until:
        return "The project was found ready a moment ago."
    checks = run_checks(ctx, quotas=False)
    missing = unmet(checks)
    if missing:
        raise PermanentError(
            f"project {ctx.cfg.project} is not ready; the checks that fail "
            "(python manage.py gcp_doctor lists the same): " + "; ".join(map(described, missing))
        )
    ctx.ready_until = ctx.clock() + ctx.cfg.ready_check_seconds
    return f"The project is ready: {sum(check.ok for check in checks)} of {len(checks)} checks pass."


def plan_changes(ctx: Context) -> list[Change]:
    """The doctor's result as plan mode shows it: one line when all is well, else one per failure."""
    checks = run_checks(ctx, quotas=False)
    failed = [check for check in checks if not check.ok]
    if not failed:
        return [Change("preconditions", "none", f"The project is ready: all {len(checks)} checks pass.")]
    return [
        Change("preconditions", "error" if check.blocks else "warning", described(check)) for check in failed
    ]


def check_gateway_quotas(ctx: Context) -> Iterator[Check]:
    """Room for another API-key endpoint (an API and a gateway each) and for the next deploy's config
    of every API."""
    project, region = ctx.cfg.project, ctx.cfg.gateway_region
    gateways = gateway.gateways(ctx)
    if len(gateways) >= GATEWAYS_PER_REGION:
        detail = (
            f"{len(gateways)} of {GATEWAYS_PER_REGION} gateways in {region}: no API-key endpoint can be added"
        )
        fix = f"gcloud api-gateway gateways delete GATEWAY_ID --location={region} --project={project}"
        yield Check("API Gateway gateways", False, detail + " (delete one no longer used)", fix)
    else:
        yield Check(
            "API Gateway gateways", True, f"{len(gateways)} of {GATEWAYS_PER_REGION} gateways in {region}"
        )
    apis = gateway.apis(ctx)
    if len(apis) >= APIS_PER_PROJECT:
        detail = f"{len(apis)} of {APIS_PER_PROJECT} APIs: no API-key endpoint can be added"
        fix = f"gcloud api-gateway apis delete API_ID --project={project}"
        yield Check("API Gateway APIs", False, detail + " (delete one no longer used)", fix)
    else:
        yield Check("API Gateway APIs", True, f"{len(apis)} of {APIS_PER_PROJECT} APIs")
    counts = {api.name: len(gateway.api_configs(ctx, api.name)) for api in apis}
    full = sorted(name for name, count in counts.items() if count >= CONFIGS_PER_API)
    if full:
        api = full[0].rsplit("/", 1)[-1]
        detail = f"{', '.join(full)} hold {CONFIGS_PER_API} configs: their next deploy cannot add one"
        fix = f"gcloud api-gateway api-configs delete CONFIG_ID --api={api} --project={project}"
        yield Check("API Gateway configs", False, detail, fix)
    else:
        most = max(counts.values(), default=0)
        yield Check("API Gateway configs", True, f"at most {most} of {CONFIGS_PER_API} configs in an API")


def check_armor_quotas(ctx: Context) -> Iterator[Check]:
    """Room under Cloud Armor's quotas (Compute's project quotas) for another allowlist endpoint."""
    project = ctx.cfg.project
    found = ctx.call(
        ctx.clients.compute("ProjectsClient").get,
        project=project,
        what=f"Read the quotas of project {project}",
    )
    quotas = {quota.metric: quota for quota in found.quotas}
    fixes = {
        "SECURITY_POLICIES": f"gcloud compute security-policies delete POLICY --project={project}",
        "SECURITY_POLICY_RULES": (
            "gcloud compute security-policies rules delete PRIORITY --security-policy=POLICY "
            f"--project={project}"
        ),
    }
    for metric, needed in ARMOR_NEEDS.items():
        name = f"Cloud Armor {metric}"
        quota = quotas.get(metric)
        if quota is None:
            yield Check(name, True, "no such quota reported for the project")
            continue
        used = f"{quota.usage:g} of {quota.limit:g} used"
        if quota.usage + needed > quota.limit:
            detail = (
                f"{used}: an allowlist endpoint needs {needed} more (delete one no longer used, or ask for "
                "more on the console's Quotas page)"
            )
            yield Check(name, False, detail, fixes[metric])
        else:
            yield Check(name, True, used)
