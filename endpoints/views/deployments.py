"""Deployments: request one, watch its steps live, roll back to an earlier one."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render

from endpoints.confirmations import deploy_question, rollback_question
from endpoints.forms import DeployForm
from endpoints.models import Deployment, Endpoint
from endpoints.services import deployments as services
from endpoints.services.errors import ServiceError
from endpoints.services.rollouts import rollout_from_request
from endpoints.views.common import (
    ask_first,
    confirmed,
    flash_error,
    form_error,
    is_htmx,
    post_only,
    vary_on_htmx,
)
from endpoints.views.endpoints import detail_context


@post_only("endpoints:endpoint-detail", "name")
@login_required
def deployment_create(request, name):
    endpoint = get_object_or_404(Endpoint.objects.for_user(request.user).with_live(), name=name)
    form = DeployForm(request.POST, user=request.user, endpoint=endpoint)
    if form.is_valid() and not confirmed(request):
        version, share = form.cleaned_data["model_version"], form.cleaned_data.get("traffic_percent")
        return ask_first(
            request,
            endpoint=endpoint,
            title=f"Deploy {version} to {endpoint.name}",
            question=deploy_question(endpoint, endpoint.live_deployment, version, share),
            button="Deploy",
            plan_of=lambda: services.deployment_plan(
                user=request.user, endpoint=endpoint, model_version=version, traffic_percent=share
            ),
        )
    if form.is_valid():
        try:
            deployment = services.deployment_request(
                user=request.user,
                endpoint=endpoint,
                model_version=form.cleaned_data["model_version"],
                traffic_percent=form.cleaned_data.get("traffic_percent"),
                rollout=rollout_from_request(form.cleaned_data),
            )
        except ServiceError as exc:
            form_error(form, exc)
        else:
            return redirect("endpoints:deployment-detail", pk=deployment.pk)
    context = detail_context(request, endpoint, deploy_form=form)
    return render(request, "endpoints/endpoint_detail.html", context, status=400)


@login_required
def deployment_detail(request, pk):
    """The deployment page; htmx polls the same URL for the steps partial while it is active."""
    deployment = get_object_or_404(
        Deployment.objects.for_user(request.user).select_related(
            "endpoint", "model_version__model", "requested_by", "rollback_of"
        ),
        pk=pk,
    )
    template = "endpoints/_deployment_steps.html" if is_htmx(request) else "endpoints/deployment_detail.html"
    return vary_on_htmx(render(request, template, {"deployment": deployment}))


@login_required
def deployment_rollout(request, pk):
    """A progressive deploy's rollout, the partial its page polls while it advances."""
    deployment = get_object_or_404(Deployment.objects.for_user(request.user), pk=pk)
    return vary_on_htmx(render(request, "endpoints/_rollout.html", {"deployment": deployment}))


@post_only("endpoints:deployment-detail", "pk")
@login_required
def deployment_rollback(request, pk):
    deployment = get_object_or_404(
        Deployment.objects.for_user(request.user).select_related("endpoint", "model_version__model"), pk=pk
    )
    if request.user.is_staff and not confirmed(request):
        endpoint = deployment.endpoint
        return ask_first(
            request,
            endpoint=endpoint,
            title=f"Roll {endpoint.name} back",
            question=rollback_question(deployment),
            button="Roll back",
            plan_of=lambda: services.deployment_plan(
                user=request.user, endpoint=endpoint, model_version=deployment.model_version
            ),
        )
    try:
        rollback = services.deployment_rollback(user=request.user, deployment=deployment)
    except ServiceError as exc:
        flash_error(request, exc)
        return redirect("endpoints:endpoint-detail", name=deployment.endpoint.name)
    messages.success(request, f"Rolling back to {deployment.model_version} (deployment {deployment.pk}).")
    return redirect("endpoints:deployment-detail", pk=rollback.pk)
