"""What an endpoint's page tells apart: settings in force, settings saved but not yet live
(pending until a deploy), and settings the runtime does not use at all.

A deploy records the runtime settings it was made with (`Deployment.settings`); a setting saved
since then differs from the live deployment's record until the next deploy. Read from rows the
page has already loaded: no query, no runtime call.

    for setting in endpoint_settings(endpoint, get_runtime()):
        setting.label, setting.value, setting.state, setting.live  # "CPU", "2", "pending", "1"
"""

from dataclasses import dataclass

from endpoints.models import AccessPolicyState, Endpoint
from worker.runtimes.base import Runtime

SETTING_LABELS = {
    "region": "Region",
    "cpu": "CPU",
    "memory": "Memory",
    "min_instances": "Minimum instances",
    "max_instances": "Maximum instances",
    "concurrency": "Concurrency",
    "timeout_seconds": "Timeout (seconds)",
}


@dataclass(frozen=True)
class Setting:
    name: str
    label: str
    value: object
    state: str  # "live", "pending" (saved, not yet deployed), "unknown" (nothing recorded), "ignored"
    live: object = None  # the value the live deployment was made with, when it differs


def endpoint_settings(endpoint: Endpoint, runtime: Runtime) -> list[Setting]:
    live = endpoint.live_deployment
    recorded = live.settings if live is not None else {}
    settings = []
    for name, label in SETTING_LABELS.items():
        value = getattr(endpoint, name)
        if name in runtime.ignored_settings:
            state, was = "ignored", None
        elif live is None:
            state, was = "pending", None  # the first deploy applies it
        elif name not in recorded:
            state, was = "unknown", None
        elif recorded[name] != value:
            state, was = "pending", recorded[name]
        else:
            state, was = "live", None
        settings.append(Setting(name, label, value, state, was))
    return settings


def redeploy_reasons(endpoint: Endpoint, runtime: Runtime) -> list[str]:
    """Why deploying the live version again would change what is in force ([] when it would not)."""
    if endpoint.live_deployment is None:
        return []
    reasons = [
        f"{setting.label}: {setting.value} saved, {setting.live} live"
        for setting in endpoint_settings(endpoint, runtime)
        if setting.state == "pending"
    ]
    if endpoint.access_state == AccessPolicyState.NEEDS_DEPLOY:
        reasons.append(f"Access mode: {endpoint.get_access_mode_display()} saved, not in force")
    return reasons
