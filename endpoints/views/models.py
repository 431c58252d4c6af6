"""Models and their versions: list, create, upload a version, see what was extracted from it."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from endpoints.forms import MLModelCreateForm, VersionUploadForm
from endpoints.models import Endpoint, MLModel, ModelVersion
from endpoints.services import versions as services
from endpoints.services.errors import ServiceError
from endpoints.uploads import require_within_limit
from endpoints.views.common import admin_required, form_error, paginate, posted


@login_required
def model_list(request):
    models = (
        MLModel.objects.for_user(request.user)
        .select_related("owner")
        .annotate(version_count=Count("versions"), latest_number=Max("versions__number"))
        .order_by("name")
    )
    return render(request, "endpoints/model_list.html", {"page": paginate(request, models)})


@admin_required
def model_create(request):
    form = MLModelCreateForm(posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            ml_model = services.ml_model_create(user=request.user, **form.cleaned_data)
        except ServiceError as exc:
            form_error(form, exc)
        else:
            messages.success(request, f"Model {ml_model.name} created. Upload its first version.")
            return redirect("endpoints:version-create", name=ml_model.name)
    return render(request, "endpoints/model_create.html", {"form": form}, status=400 if form.errors else 200)


@login_required
def model_detail(request, name):
    ml_model = get_object_or_404(MLModel.objects.for_user(request.user).select_related("owner"), name=name)
    versions = (
        ModelVersion.objects.for_user(request.user)
        .filter(model=ml_model)
        .select_related("created_by")
        .annotate(deployment_count=Count("deployments"))
        .order_by("-number")
    )
    return render(request, "endpoints/model_detail.html", {"ml_model": ml_model, "versions": versions})


@admin_required
def version_create(request, name):
    ml_model = get_object_or_404(MLModel.objects.for_user(request.user), name=name)
    form = VersionUploadForm(posted(request), posted(request, files=True))
    try:
        require_within_limit(request)  # a file dropped while it streamed in, before the form sees it
    except ServiceError as exc:
        form.is_valid()
        form.errors.pop("artifact", None)
        form_error(form, exc)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            version = services.model_version_register(
                user=request.user,
                ml_model=ml_model,
                upload=data["artifact"],
                input_schema=data["input_schema"],
                label_map=data["label_map"],
                metrics=data["metrics"],
                example=data["example"],
                trust_code=data["trust_code"],
                trusted_types=data["trusted_types"],
            )
        except ServiceError as exc:
            if exc.extra.get("untrusted_types"):  # offer the exact list for review
                form.data = form.data.copy()
                form.data["trusted_types"] = "\n".join(exc.extra["untrusted_types"])
                form.add_error("artifact", "Review the trusted types below, then choose the file again.")
            form_error(form, exc)
        else:
            messages.success(request, f"Registered {version}.")
            return redirect("endpoints:version-detail", name=ml_model.name, number=version.number)
    return render(
        request,
        "endpoints/version_create.html",
        {"form": form, "ml_model": ml_model},
        status=400 if form.errors else 200,
    )


@login_required
def version_detail(request, name, number):
    version = get_object_or_404(
        ModelVersion.objects.for_user(request.user).select_related("model", "created_by"),
        model__name=name,
        number=number,
    )
    deployments = version.deployments.select_related("endpoint").order_by("-created_at", "-id")[:20]
    classes = [{"value": cls, "label": version.label_map.get(str(cls), "")} for cls in version.classes]
    targets = Endpoint.objects.for_user(request.user).order_by("name") if request.user.is_staff else None
    return render(
        request,
        "endpoints/version_detail.html",
        {"version": version, "classes": classes, "deployments": deployments, "targets": targets},
    )


@admin_required
def version_deploy(request, name, number):
    """ "Deploy this version" from the version page: the endpoint's page, with this version chosen
    in its Deploy form (the deploy itself is asked for and confirmed there)."""
    version = get_object_or_404(ModelVersion.objects.for_user(request.user), model__name=name, number=number)
    endpoint = Endpoint.objects.for_user(request.user).filter(name=request.GET.get("endpoint", "")).first()
    if endpoint is None:
        messages.error(request, "Choose the endpoint to deploy it to.")
        return redirect("endpoints:version-detail", name=name, number=number)
    url = reverse("endpoints:endpoint-detail", args=[endpoint.name])
    return redirect(f"{url}?version={version.pk}#deploy")
