"""An endpoint's health, as its list and page say it: apart from how its last operation ended.

A failed deploy leaves the version that was live serving, so the endpoint is "serving" and the
failure is told beside it, as the last operation's outcome. Read from the endpoint's row and its
live deployment only (no runtime call, no query), so a list of a thousand costs nothing more.

    health = endpoint_health(endpoint)
    health.state, health.label, health.reason  # "degraded", "Degraded", "The access policy ..."
"""

from dataclasses import dataclass

from endpoints.models import AccessPolicyState, Endpoint


@dataclass(frozen=True)
class Health:
    state: str  # serving, degraded, stopped, not_deployed
    label: str
    reason: str = ""


def endpoint_health(endpoint: Endpoint) -> Health:
    if endpoint.live_deployment_id is None:
        return Health("not_deployed", "Not deployed", "No version has been live on it yet.")
    if endpoint.stopped_at:
        return Health("stopped", "Stopped", "Stopped by an admin: it answers no prediction until started.")
    if endpoint.https_pending:
        return Health(
            "degraded",
            "Degraded",
            "Its HTTPS address answers no call until its DNS record and certificate are in place.",
        )
    access = endpoint.access_state
    if access == AccessPolicyState.FAILED:
        return Health("degraded", "Degraded", "The last access change failed: the previous policy may hold.")
    if access == AccessPolicyState.NEEDS_DEPLOY:
        return Health("degraded", "Degraded", "The access mode asked for needs a deploy to be in force.")
    return Health("serving", "Serving")
