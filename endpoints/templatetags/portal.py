"""Small template helpers for the dashboard: status badges, times, byte sizes, the nav's pending count."""

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from endpoints.confirmations import SHARE, deploy_question, rollback_question
from endpoints.health import endpoint_health
from endpoints.models import ApiKeyRequest, DeploymentStatus, KeyRequestStatus, LoadTestStatus
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
    **dict(LoadTestStatus.choices),
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
def health(endpoint):
    """The endpoint's health as a pill (serving, degraded, stopped, not deployed); why it is
    degraded in a line under it."""
    state = endpoint_health(endpoint)
    pill = format_html('<span class="badge health-{}">{}</span>', state.state, state.label)
    if state.state == "degraded":
        return format_html('{}<div class="muted small">{}</div>', pill, state.reason)
    return pill


@register.simple_tag
def deploy_confirmation(endpoint, live) -> str:
    """What the Deploy button asks before it sends, `{version}` filled in with the version chosen."""
    return deploy_question(endpoint, live)


@register.simple_tag
def canary_confirmation(endpoint, live) -> str:
    """What it asks instead with a share below 100, `{share}` filled in with the share."""
    return deploy_question(endpoint, live, share=SHARE) if live else ""


@register.simple_tag
def redeploy_confirmation(endpoint, live) -> str:
    return deploy_question(endpoint, live, version=live.model_version)


@register.simple_tag
def rollback_confirmation(deployment) -> str:
    return rollback_question(deployment)


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


#: The one way the dashboard writes a time: to the minute, with its time zone.
TIME_FORMAT = "%Y-%m-%d %H:%M"


@register.filter
def when(value: datetime | None, empty: str = "—"):
    """A time as every page writes it, `2026-12-06 03:47 UTC`, in a <time> element whose title
    has the seconds; `empty` (a dash by default) when there is none."""
    if value is None or value == "":
        return empty
    if not isinstance(value, datetime):
        return value
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    zone = local.tzname() or ""
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        local.isoformat(timespec="seconds"),
        f"{local:%Y-%m-%d %H:%M:%S} {zone}".strip(),
        f"{local:{TIME_FORMAT}} {zone}".strip(),
    )


@register.filter
def shown_resources(resources: dict | None) -> list[tuple[str, str]]:
    """What a deployment's runtime made, as (name, text) pairs for people: names with no value
    (`previous_revision` of a first deploy) are left out, lists are joined."""
    shown = []
    for name, value in (resources or {}).items():
        if value is None or value == "" or value == [] or value == {}:
            continue
        if isinstance(value, list | tuple):
            value = ", ".join(str(item) for item in value)
        elif isinstance(value, dict):
            value = ", ".join(f"{key}: {item}" for key, item in value.items())
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        shown.append((name, str(value)))
    return shown


@register.filter
def detail_value(value):
    """An audit detail as people read it: no raw None, times as every page writes them, lists
    and objects spelt out."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            return when(datetime.fromisoformat(value))
        except ValueError:
            return value
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "—"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {'—' if item is None else item}" for key, item in value.items()) or "—"
    return value


RESOURCE_LABELS = {"url": "URL", "gateway_url": "Gateway URL", "api_config": "API config"}


@register.filter
def resource_label(name: str) -> str:
    """'gateway_url' -> 'Gateway URL': the names the runtime records, as people read them."""
    return RESOURCE_LABELS.get(name, name.replace("_", " ").capitalize())


@register.filter
def percentiles(summary: dict) -> list[str]:
    """A load test's p50, p95 and p99 as its table shows them: Locust counts whole milliseconds, so
    a 0 reads "< 1"."""
    return [
        "—" if value is None else ("< 1" if value == 0 else str(value))
        for value in (summary.get("p50"), summary.get("p95"), summary.get("p99"))
    ]
