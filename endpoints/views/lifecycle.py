"""Stop, start and delete an endpoint from its page; each opens an operation's progress page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render

from endpoints.forms import DeleteEndpointForm
from endpoints.models import Endpoint
from endpoints.services import lifecycle as services
from endpoints.services.errors import ServiceError
from endpoints.views.common import admin_required, flash_error, form_error, post_only, posted


def _endpoint(request, name: str) -> Endpoint:
    return get_object_or_404(Endpoint.objects.for_user(request.user).with_live(), name=name)


@post_only("endpoints:endpoint-detail", "name")
@login_required
def endpoint_stop(request, name):
    return _run(request, _endpoint(request, name), services.endpoint_stop, "Stopping")


@post_only("endpoints:endpoint-detail", "name")
@login_required
def endpoint_start(request, name):
    return _run(request, _endpoint(request, name), services.endpoint_start, "Starting")


def _run(request, endpoint: Endpoint, service, doing: str):
    try:
        operation = service(user=request.user, endpoint=endpoint)
    except ServiceError as exc:
        flash_error(request, exc)
        return redirect("endpoints:endpoint-detail", name=endpoint.name)
    messages.success(request, f"{doing} {endpoint.name}.")
    return redirect("endpoints:deployment-detail", pk=operation.pk)


@admin_required
def endpoint_delete(request, name):
    """What a delete would remove (the runtime's plan), and the form that asks for the name."""
    endpoint = _endpoint(request, name)
    form = DeleteEndpointForm(posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            operation = services.endpoint_delete(
                user=request.user, endpoint=endpoint, confirm=form.cleaned_data["confirm"]
            )
        except ServiceError as exc:
            form_error(form, exc)
        else:
            messages.success(request, f"Deleting {endpoint.name}.")
            return redirect("endpoints:deployment-detail", pk=operation.pk)
    try:
        plan, plan_error = services.lifecycle_plan(user=request.user, endpoint=endpoint, action="delete"), ""
    except ServiceError as exc:
        plan, plan_error = [], exc.message
    return render(
        request,
        "endpoints/endpoint_delete.html",
        {"endpoint": endpoint, "form": form, "plan": plan, "plan_error": plan_error},
        status=400 if form.errors else 200,
    )
