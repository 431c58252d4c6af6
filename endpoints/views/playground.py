"""The playground panel on the endpoint and version pages, and the view that sends its call.

The panel is drawn by `{% playground_panel endpoint=... %}` / `{% playground_panel version=... %}`
(endpoints/templatetags/playground.py) from `panel_context`. Its form POSTs to `playground_send`,
which calls the live endpoint through the portal (endpoints.services.playground) and answers the
panel again, with the answer, its time and any field errors: the panel alone for htmx, else a page
of its own, so the form works without JavaScript too.
"""

import json

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render

from endpoints.models import AccessMode, Endpoint, ModelVersion
from endpoints.playground_form import PlaygroundForm
from endpoints.services.errors import NotAllowed, ServiceError
from endpoints.services.playground import live_refusal, playground_call, playground_refusal
from endpoints.snippets import call_snippets
from endpoints.views.common import is_htmx, vary_on_htmx
from worker.runtimes import get_runtime


def live_targets(user, version: ModelVersion) -> list[Endpoint]:
    """The endpoints `version` serves now (not stopped), that `user` can see."""
    return list(
        Endpoint.objects.for_user(user)
        .with_live()
        .filter(live_deployment__model_version=version, stopped_at__isnull=True)
        .order_by("name")
    )


def panel_context(
    request,
    *,
    endpoint: Endpoint | None = None,
    version: ModelVersion | None = None,
    data=None,
    answer=None,
    error: str = "",
    key: str = "",
    body: dict | None = None,
) -> dict:
    """What the panel shows: for an endpoint's page, that endpoint; for a version's page, the
    endpoints it is live on (the first, or the one chosen in `data`)."""
    user = request.user
    if version is not None:
        targets = live_targets(user, version)
    else:
        targets = [endpoint] if endpoint is not None and not live_refusal(endpoint) else []
    chosen = data.get("endpoint") if data is not None else None
    target = next((each for each in targets if each.name == chosen), targets[0] if targets else None)
    serving = target.live_deployment.model_version if target is not None else None
    schema_version = serving or version
    context = {
        "page_version": version,
        "page_endpoint": endpoint,
        "targets": targets,
        "target": target,
        "serving_version": serving,
        "answer": answer,
        "error": error,
        "user": user,
        # Where "Deploy this version" goes: the version page's own deploy form, once there is an
        # endpoint to deploy to.
        "has_endpoints": version is not None
        and target is None
        and user.is_staff
        and Endpoint.objects.for_user(user).exists(),
        "not_live": "" if target is not None else (live_refusal(endpoint) if endpoint is not None else ""),
    }
    if schema_version is None:
        return context
    form = PlaygroundForm(
        schema_version.input_schema,
        examples=schema_version.example_set,
        data=data,
        classifier=bool(schema_version.classes),
    )
    if answer is not None:
        form.attach(answer.fields)
    context.update(
        form=form,
        examples=schema_version.example_set,
        example_json=json.dumps(schema_version.example_set["rows"][0], ensure_ascii=False),
        refusal=playground_refusal(user, target) if target is not None else "",
        needs_key=target is not None and target.checks_keys and not get_runtime().portal_path,
    )
    if target is not None and target.public_url:
        if body is None:  # the examples': one row, or the batch's rows as the form shows them
            rows = form.examples_rows
            body = {"inputs": rows} if form.shape == "batch" else form.row()
        context["snippets"] = call_snippets(
            url=target.public_url,
            body=body,
            mode=form.return_mode,
            checks_keys=target.checks_keys,
            key=key,
            bearer=target.access_mode == AccessMode.IDENTITY,
        )
        context["serving_docs"] = target.public_url.rstrip("/") + "/docs"
    return context


@login_required
def playground_send(request):
    """Send the panel's call through the portal and show the panel again with the answer."""
    if request.method != "POST":
        name = request.GET.get("endpoint")
        return (
            redirect("endpoints:endpoint-detail", name=name) if name else redirect("endpoints:endpoint-list")
        )
    endpoint = get_object_or_404(
        Endpoint.objects.for_user(request.user).with_live(), name=request.POST.get("endpoint", "")
    )
    version = None
    if request.POST.get("version"):
        if not request.POST["version"].isdigit():
            raise Http404("No such version.")
        version = get_object_or_404(
            ModelVersion.objects.for_user(request.user).select_related("model"), pk=request.POST["version"]
        )
    refusal = playground_refusal(request.user, endpoint)
    if refusal:
        raise PermissionDenied(refusal)
    page = {"endpoint": None, "version": version} if version else {"endpoint": endpoint}
    first = panel_context(request, **page, data=request.POST)
    form, target = first.get("form"), first.get("target")
    answer, error, body = None, "", None
    if form is None or target is None or target.pk != endpoint.pk:
        error = live_refusal(endpoint) or f"{endpoint.name} does not serve {version} any more."
    else:
        body = form.body()
    if body is not None:
        try:
            answer = playground_call(
                user=request.user,
                endpoint=endpoint,
                body=body,
                mode=form.return_mode,
                api_key=request.POST.get("api_key", ""),
            )
        except NotAllowed as exc:
            raise PermissionDenied(exc.message) from None
        except ServiceError as exc:
            if exc.field == "api_key":
                form.api_key_error = exc.message
            elif exc.field == "return":
                form.return_error = exc.message
            else:
                error = exc.message
    context = panel_context(request, **page, data=request.POST, answer=answer, error=error, body=body)
    if form is not None and "form" in context:
        # The same inputs, with what the first form learnt before and during the call.
        context["form"].batch_errors[:0] = form.batch_errors
        context["form"].return_error = form.return_error or context["form"].return_error
        context["form"].api_key_error = form.api_key_error
    template = "endpoints/_playground.html" if is_htmx(request) else "endpoints/playground.html"
    return vary_on_htmx(render(request, template, context))
