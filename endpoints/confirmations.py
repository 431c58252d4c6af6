"""What a form that changes what serves asks before it is sent, in one place.

The dashboard asks in the browser's own dialog (`data-confirm`, portal.js), with `{version}` and
`{share}` filled in from the form; a browser without JavaScript gets the same question as a page
(`endpoints/confirm.html`), with the values already filled in.
"""

VERSION = "{version}"
SHARE = "{share}"


def deploy_question(endpoint, live, version=VERSION, share=None) -> str:
    """Deploying `version` to `endpoint` (with `share` percent of the traffic when below 100)."""
    if live is None:
        return (
            f"Deploy {version} to {endpoint.name}? It becomes the version that answers every call, on a "
            "URL the deploy makes."
        )
    now = f"{live.model_version} (deployment #{live.pk}, live now)"
    if share not in (None, "", 100, "100"):
        return f"Deploy {version} to {endpoint.name} with {share}% of the traffic? {now} keeps the rest."
    if version == live.model_version:
        return (
            f"Redeploy {version} to {endpoint.name}? A new revision of the same version starts with the "
            f"settings saved since deployment #{live.pk} and answers every call once it is ready; the "
            "revision live now then stops serving."
        )
    return (
        f"Deploy {version} to {endpoint.name}? Once it is ready it answers every call to "
        f"{endpoint.public_url or endpoint.name}, and {now} stops serving; you can roll back to it."
    )


def rollback_question(deployment) -> str:
    """Rolling back to `deployment`: which version comes back and which one stops serving."""
    endpoint = deployment.endpoint
    live = endpoint.live_deployment
    now = f" {live.model_version} (deployment #{live.pk}, live now) stops serving." if live else ""
    return (
        f"Roll {endpoint.name} back to {deployment.model_version} (deployment #{deployment.pk})? "
        f"It is deployed again and takes all the traffic once ready.{now}"
    )
