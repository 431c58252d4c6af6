"""The playground panel and the call snippets, drawn where a page includes them.

{% load playground %}{% playground_panel endpoint=endpoint %}   (or version=version)
{% call_snippets_for endpoint key=secret %}                       (a key just revealed)
"""

from django import template

from endpoints.services.playground import live_refusal
from endpoints.snippets import call_snippets
from endpoints.views.playground import panel_context

register = template.Library()


@register.inclusion_tag("endpoints/_playground.html", takes_context=True)
def playground_panel(context, endpoint=None, version=None):
    return panel_context(context["request"], endpoint=endpoint, version=version)


@register.inclusion_tag("endpoints/_call_snippets.html")
def call_snippets_for(endpoint, key=""):
    """The call snippets for `endpoint`'s live version, its first example row in the body; with
    `key` (only on the response that reveals it) the curl carries that key."""
    live = endpoint.live_deployment
    if live is None or live_refusal(endpoint) or not endpoint.public_url:
        return {"snippets": None}
    version = live.model_version
    body = version.example_set["rows"][0]
    return {
        "snippets": call_snippets(url=endpoint.public_url, body=body, mode=None, checks_keys=True, key=key),
        "with_key": bool(key),
        "prefix": "reveal",
    }
