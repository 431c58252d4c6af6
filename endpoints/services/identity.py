"""The identity access mode's settings: callers send `Authorization: Bearer <JWT>`.

Where the serving process checks tokens (`Runtime.identity_check == "serving"`: local), the
endpoint names the issuer, the audience and the issuer's JWKS URL, and optionally a claim every
token must carry. Where the platform does (`"platform"`: Cloud Run's IAM), only the platform's
issuer is possible, the audience is the service's URL unless another is named, no claim can be
required, and the endpoint keeps the list of principals the platform lets call.

    problems = identity_problems(endpoint, get_runtime())  # every refusal, each on its field
"""

from __future__ import annotations

import re
from ipaddress import ip_address
from urllib.parse import urlsplit

from endpoints.models import AccessMode, Endpoint
from endpoints.services.errors import ServiceError, Unprocessable
from worker.runtimes.base import IdentityPolicy, Runtime

IDENTITY_FIELDS = (
    "identity_issuer",
    "identity_audience",
    "identity_jwks_url",
    "identity_claim",
    "identity_invokers",
)
MAX_INVOKERS = 100
EMAIL = r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+"
PRINCIPAL = re.compile(rf"^((user|serviceAccount|group):{EMAIL}|domain:[a-z0-9-]+(\.[a-z0-9-]+)+)$")
CLAIM = re.compile(r"^([A-Za-z_][A-Za-z0-9_.:-]{0,99})=(.{1,200})$")
#: What the API's schema states for the claim: empty, or name=value.
CLAIM_OR_NOTHING = r"^(|[A-Za-z_][A-Za-z0-9_.:-]{0,99}=.{1,200})$"
PUBLIC_PRINCIPALS = ("allUsers", "allAuthenticatedUsers")


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ip_address(host).is_loopback
    except ValueError:
        return False


def _url_problem(value: str, what: str) -> str | None:
    """Why `value` is not an https URL (http only to this machine), or None."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return f"The {what} {value!r} is not a URL."
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and _loopback(parts.hostname):
        return None
    return f"The {what} must be an https:// URL (http:// only to this machine), not {value!r}."


def split_claim(value: str) -> tuple[str, str]:
    """("groups", "ml") from "groups=ml"; ("", "") for no claim."""
    found = CLAIM.match(value or "")
    return (found.group(1), found.group(2)) if found else ("", "")


def invoker_problem(member: object) -> str | None:
    """Why `member` is not a principal an invoker list may name, or None."""
    if not isinstance(member, str):
        return f"{member!r} is not a principal."
    if member in PUBLIC_PRINCIPALS:
        return f"{member} would let anyone call: use the open access mode instead."
    if not PRINCIPAL.match(member):
        return (
            f"{member!r} is not a principal: write user:name@example.com, "
            "serviceAccount:name@project.iam.gserviceaccount.com, group:team@example.com or "
            "domain:example.com."
        )
    return None


def identity_fill_defaults(endpoint: Endpoint, runtime: Runtime) -> None:
    """Give an identity-mode endpoint the runtime's values where it names none (Google's issuer
    and keys on Google Cloud)."""
    if endpoint.access_mode != AccessMode.IDENTITY:
        return
    for name, value in runtime.identity_defaults.items():
        if not getattr(endpoint, name):
            setattr(endpoint, name, value)


def identity_problems(endpoint: Endpoint, runtime: Runtime) -> list[ServiceError]:
    """Every reason the endpoint's identity settings cannot be used, each on its field."""
    problems: list[ServiceError] = []
    identity = endpoint.access_mode == AccessMode.IDENTITY
    platform = runtime.identity_check == "platform"
    claim = endpoint.identity_claim or ""
    if claim and not CLAIM.match(claim):
        problems.append(
            ServiceError(
                "Write the required claim as name=value (groups=ml-callers, email_verified=true).",
                field="identity_claim",
            )
        )
    invokers = endpoint.identity_invokers
    if not isinstance(invokers, list):
        problems.append(ServiceError("Give the invokers as a list of principals.", field="identity_invokers"))
        invokers = []
    bad = [problem for member in invokers if (problem := invoker_problem(member))]
    if bad:
        problems.append(ServiceError(" ".join(bad), field="identity_invokers"))
    if len(invokers) > MAX_INVOKERS:
        problems.append(
            ServiceError(f"Name at most {MAX_INVOKERS} invokers (use a group).", field="identity_invokers")
        )
    if not identity:
        return problems
    for name, what in (("identity_issuer", "issuer"), ("identity_jwks_url", "JWKS URL")):
        value = getattr(endpoint, name)
        if not value:
            problems.append(Unprocessable(f"The identity mode needs the token {what}.", field=name))
        elif problem := _url_problem(value, what):
            problems.append(Unprocessable(problem, field=name))
    if platform:
        for name, value in runtime.identity_defaults.items():
            if getattr(endpoint, name) and getattr(endpoint, name) != value:
                problems.append(
                    Unprocessable(
                        f"On the {runtime.name} runtime the platform checks tokens itself and takes "
                        f"only {value}.",
                        field=name,
                    )
                )
        if claim:
            problems.append(
                Unprocessable(
                    f"On the {runtime.name} runtime the platform checks tokens and cannot require a "
                    "claim: leave it empty, and name who may call in the invokers.",
                    field="identity_claim",
                )
            )
        if not invokers:
            problems.append(
                Unprocessable(
                    "Name who may call: with no invoker the platform refuses every caller.",
                    field="identity_invokers",
                )
            )
    else:
        if not endpoint.identity_audience:
            problems.append(
                ServiceError(
                    "The identity mode needs the audience tokens are issued for.", field="identity_audience"
                )
            )
        if invokers:
            problems.append(
                Unprocessable(
                    f"The {runtime.name} runtime checks tokens in the serving process and keeps no invoker "
                    "list: require a claim instead.",
                    field="identity_invokers",
                )
            )
    return problems


def identity_policy_for(endpoint: Endpoint) -> IdentityPolicy | None:
    if endpoint.access_mode != AccessMode.IDENTITY:
        return None
    name, value = split_claim(endpoint.identity_claim)
    return IdentityPolicy(
        issuer=endpoint.identity_issuer,
        audience=endpoint.identity_audience,
        jwks_url=endpoint.identity_jwks_url,
        claim_name=name,
        claim_value=value,
        invokers=tuple(endpoint.identity_invokers or ()),
    )
