"""Endpoints: the list (the home page), create, settings, and the detail page that ties it all together."""

import json
import shlex

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import OuterRef, Subquery
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from endpoints.charts import load_test_charts
from endpoints.forms import (
    AllowlistEntryForm,
    DeployForm,
    EndpointCreateForm,
    EndpointSettingsForm,
    LoadTestForm,
)
from endpoints.models import AccessMode, ApiKey, Deployment, Endpoint, LoadTest, ModelVersion
from endpoints.pending import SETTING_LABELS
from endpoints.services import endpoints as services
from endpoints.services.errors import ServiceError
from endpoints.services.exports import kubernetes_manifests
from endpoints.services.identity import IDENTITY_FIELDS
from endpoints.services.load_tests import load_test_refusal
from endpoints.views.common import admin_required, flash_error, form_error, paginate, posted
from worker.runtimes import get_runtime

HISTORY_SIZE = 25
DELETED_SHOWN = 10  # the latest deleted endpoints listed under the others, with their delete


def with_latest_deployment(endpoints):
    """Annotate each endpoint with its newest operation's id, action and status, in the same query."""
    latest = Deployment.objects.filter(endpoint=OuterRef("pk")).order_by("-created_at", "-id")
    return endpoints.annotate(
        latest_deployment_id=Subquery(latest.values("pk")[:1]),
        latest_action=Subquery(latest.values("action")[:1]),
        latest_status=Subquery(latest.values("status")[:1]),
    )


@login_required
def endpoint_list(request):
    endpoints = with_latest_deployment(Endpoint.objects.for_user(request.user).with_live())
    query = request.GET.get("q", "").strip()
    if query:
        endpoints = endpoints.filter(name__icontains=query)
    deleted = []
    if request.user.is_staff:
        deleted = with_latest_deployment(Endpoint.objects.deleted().order_by("-deleted_at"))[:DELETED_SHOWN]
    return render(
        request,
        "endpoints/endpoint_list.html",
        {"page": paginate(request, endpoints), "query": query, "deleted": deleted},
    )


@admin_required
def endpoint_create(request):
    form = EndpointCreateForm(posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            endpoint = services.endpoint_create(user=request.user, **form.cleaned_data)
        except ServiceError as exc:
            form_error(form, exc)
        else:
            messages.success(
                request, f"Endpoint {endpoint.name} created. Choose a model version and deploy it."
            )
            return redirect("endpoints:endpoint-detail", name=endpoint.name)
    return render(
        request, "endpoints/endpoint_create.html", {"form": form}, status=400 if form.errors else 200
    )


@admin_required
def endpoint_edit(request, name):
    endpoint = get_object_or_404(Endpoint.objects.for_user(request.user), name=name)
    form = EndpointSettingsForm(posted(request), endpoint=endpoint)
    if request.method == "POST" and form.is_valid():
        before = {name: getattr(endpoint, name) for name in form.cleaned_data}
        try:
            services.endpoint_update(user=request.user, endpoint=endpoint, **form.cleaned_data)
        except ServiceError as exc:
            endpoint.refresh_from_db()
            form_error(form, exc)
        else:
            changed = {name for name, value in before.items() if getattr(endpoint, name) != value}
            messages.success(request, settings_saved_message(endpoint, changed=changed))
            return redirect("endpoints:endpoint-detail", name=endpoint.name)
    return render(
        request,
        "endpoints/endpoint_edit.html",
        {"form": form, "endpoint": endpoint},
        status=400 if form.errors else 200,
    )


def settings_saved_message(endpoint: Endpoint, *, changed: set[str]) -> str:
    """What saving the settings did, as the runtime will have it: what applies at once, what waits
    for a deploy, what the runtime does not use at all."""
    if not changed:
        return "Settings saved: nothing changed."
    runtime = get_runtime()
    sizing = [name for name in SETTING_LABELS if name in changed]
    ignored = [SETTING_LABELS[name] for name in sizing if name in runtime.ignored_settings]
    waiting = [SETTING_LABELS[name] for name in sizing if name not in runtime.ignored_settings]
    parts = ["Settings saved."]
    if "access_mode" in changed:
        parts.append(f"The access mode “{endpoint.get_access_mode_display()}” is being applied now.")
        if endpoint.checks_addresses and not endpoint.allowlist.exists():
            parts.append(
                "The allowlist is empty, so the endpoint refuses every caller until an address is added."
            )
        if endpoint.access_note:
            parts.append(endpoint.access_note)
    elif endpoint.access_mode == AccessMode.IDENTITY and changed & set(IDENTITY_FIELDS):
        parts.append("The identity settings are being applied now.")
    if waiting:
        when = (
            "pending until a version is deployed again (Redeploy current version below)"
            if endpoint.live_deployment_id
            else "applied by the first deployment"
        )
        parts.append(f"{', '.join(waiting)}: {when}.")
    if ignored:
        parts.append(f"The {runtime.name} runtime does not use {', '.join(ignored)}.")
    return " ".join(parts)


@login_required
def endpoint_detail(request, name):
    endpoint = get_object_or_404(Endpoint.objects.for_user(request.user).with_live(), name=name)
    return render(request, "endpoints/endpoint_detail.html", detail_context(request, endpoint))


@admin_required
def endpoint_manifests(request, name):
    """The endpoint's Kubernetes objects as a YAML file to download (the GitOps export)."""
    endpoint = get_object_or_404(Endpoint.objects.for_user(request.user).with_live(), name=name)
    try:
        text = kubernetes_manifests(endpoint)
    except ServiceError as exc:
        flash_error(request, exc)
        return redirect("endpoints:endpoint-detail", name=endpoint.name)
    response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{endpoint.name}.k8s.yaml"'
    return response


@login_required
def endpoint_access_state(request, name):
    """The access policy state line, polled by the endpoint page while a change is pending."""
    endpoint = get_object_or_404(Endpoint.objects.for_user(request.user), name=name)
    return render(request, "endpoints/_access_state.html", {"endpoint": endpoint})


def detail_context(
    request, endpoint: Endpoint, *, deploy_form=None, allowlist_form=None, load_test_form=None
) -> dict:
    """Everything the endpoint page shows; the deploy and allowlist views re-render it with errors."""
    user = request.user
    history = list(
        endpoint.deployments.select_related("model_version__model", "requested_by").order_by(
            "-created_at", "-id"
        )[: HISTORY_SIZE + 1]
    )
    active = next((d for d in history if not d.is_finished), None)
    live = endpoint.live_deployment
    if deploy_form is None and user.is_staff:
        deploy_form = DeployForm(user=user, endpoint=endpoint, chosen=request.GET.get("version"))
    return {
        "endpoint": endpoint,
        "live": live,
        "active": active,
        "history": history[:HISTORY_SIZE],
        "history_truncated": len(history) > HISTORY_SIZE,
        "deploy_form": deploy_form,
        "allowlist": endpoint.allowlist.select_related("added_by"),
        "allowlist_form": allowlist_form or AllowlistEntryForm(),
        "keys": ApiKey.objects.for_user(user).filter(endpoint=endpoint).select_related("team", "endpoint"),
        "example": predict_example(endpoint, live.model_version if live else None),
        "enforcer": get_runtime().enforcers,
        "manifests": get_runtime().name == "kubernetes",
        **load_test_context(user, endpoint, form=load_test_form),
    }


RECENT_LOAD_TESTS = 5


def load_test_context(user, endpoint: Endpoint, *, form=None) -> dict:
    """What the endpoint page's load test panel shows (the page and the polled partial alike)."""
    recent = list(
        LoadTest.objects.for_user(user)
        .filter(endpoint=endpoint)
        .select_related("requested_by")[:RECENT_LOAD_TESTS]
    )
    latest = recent[0] if recent else None
    return {
        "endpoint": endpoint,
        "load_test": latest,
        "load_tests": recent,
        "load_test_charts": load_test_charts(latest.timeseries, latest.duration_seconds) if latest else [],
        "load_test_form": form or LoadTestForm(),
        "load_test_refusal": load_test_refusal(endpoint) if user.is_staff else "",
    }


def predict_example(endpoint: Endpoint, version: ModelVersion | None) -> dict | None:
    """A curl command for one prediction, built from the live version's input schema."""
    if version is None or not endpoint.public_url:
        return None
    row = version.example_set["rows"][0]  # given at upload, or read from the model (endpoints.examples)
    url = endpoint.public_url.rstrip("/") + "/predict"
    lines = [f"curl -X POST {shlex.quote(url)}", "-H 'content-type: application/json'"]
    if endpoint.checks_keys:
        lines.append('-H "x-api-key: $API_KEY"')
    # One row with named features: serving answers {"target": <label>, <label>: <probability>, ...}.
    lines.append(f"-d {shlex.quote(json.dumps(row))}")
    return {"url": url, "curl": " \\\n  ".join(lines)}
