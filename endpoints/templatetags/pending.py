"""Template helpers for what is live and what is not yet: settings and access as the runtime
serves them (see `endpoints.pending`)."""

from django import template

from endpoints.models import AccessPolicyState
from endpoints.pending import endpoint_settings, redeploy_reasons
from worker.runtimes import get_runtime

register = template.Library()


@register.simple_tag
def settings_of(endpoint) -> list:
    """The endpoint's runtime settings, each live, pending, unknown or ignored by the runtime."""
    return endpoint_settings(endpoint, get_runtime())


@register.simple_tag
def ignored_reason() -> str:
    return get_runtime().ignored_settings_reason


@register.simple_tag
def redeploy_needed(endpoint) -> list[str]:
    """What a redeploy of the live version would put in force ([] when nothing)."""
    return redeploy_reasons(endpoint, get_runtime())


@register.simple_tag
def access_lead(endpoint, live) -> str:
    """How the access checks are told: in force now (""), once a pending change is applied, or
    once something is deployed."""
    if live is None:
        return "Once deployed, "
    if endpoint.access_state != AccessPolicyState.APPLIED:
        return "Once in force, "
    return ""
