"""Small template helpers for the dashboard: status badges, byte sizes, the nav's pending count."""

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from endpoints.models import ApiKeyRequest, DeploymentStatus, KeyRequestStatus
from endpoints.services.keys import DEFAULT_OVERLAP_HOURS, MAX_OVERLAP_HOURS

register = template.Library()

SECTIONS = (
    ("key-request-", "key-requests"),
    ("key-", "keys"),
    ("model-", "models"),
    ("version-", "models"),
    ("audit-", "audit"),
    ("token-", "tokens"),
    ("cloud-setup", "cloud-setup"),
)
LABELS = {
    **dict(DeploymentStatus.choices),
    **dict(KeyRequestStatus.choices),
    "active": "Active",
    "revoked": "Revoked",
    "expired": "Expired",
    "done": "Done",
    "retrying": "Retrying",
}


@register.filter
def section(url_name: str | None) -> str:
    """Which nav entry a page belongs to, from its URL name."""
    for prefix, name in SECTIONS:
        if (url_name or "").startswith(prefix):
            return name
    return "endpoints"


@register.simple_tag
def badge(status: str | None):
    """A coloured status pill; one style per deployment, request, key or step state."""
    if not status:
        return mark_safe('<span class="badge badge-none">never deployed</span>')
    return format_html('<span class="badge badge-{}">{}</span>', status, LABELS.get(status, status))


@register.simple_tag
def overlap_hours(bound: str = "default") -> int:
    """A rotation's overlap, as the service defines it: its default, or its maximum ("max")."""
    return MAX_OVERLAP_HOURS if bound == "max" else DEFAULT_OVERLAP_HOURS


@register.simple_tag
def pending_key_requests() -> int:
    return ApiKeyRequest.objects.filter(status=KeyRequestStatus.PENDING).count()


@register.filter
def filesize(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)


@register.filter
def elapsed(deployment) -> str:
    """How long the deployment took (or has taken so far), as '12.3 s' or '2 min 5 s'."""
    start = deployment.started_at or deployment.created_at
    end = deployment.finished_at or (None if deployment.is_finished else timezone.now())
    if start is None or end is None:
        return ""
    seconds = max((end - start).total_seconds(), 0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds} s"


RESOURCE_LABELS = {"url": "URL", "gateway_url": "Gateway URL", "api_config": "API config"}


@register.filter
def resource_label(name: str) -> str:
    """'gateway_url' -> 'Gateway URL': the names the runtime records, as people read them."""
    return RESOURCE_LABELS.get(name, name.replace("_", " ").capitalize())
