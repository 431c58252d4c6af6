"""Load tests from the endpoint page: start one, follow it (an htmx partial polled while it runs),
cancel it, download its locustfile."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from endpoints.forms import LoadTestForm
from endpoints.locustfile import locustfile_name
from endpoints.models import Endpoint, LoadTest
from endpoints.services import load_tests as services
from endpoints.services.errors import ServiceError
from endpoints.views.common import flash_error, form_error, is_htmx, post_only, vary_on_htmx
from endpoints.views.endpoints import detail_context, load_test_context


def _endpoint(request, name: str) -> Endpoint:
    return get_object_or_404(Endpoint.objects.for_user(request.user).with_live(), name=name)


@login_required
def load_test_panel(request, name):
    """The panel alone: polled by the endpoint page while a test runs."""
    endpoint = _endpoint(request, name)
    return vary_on_htmx(
        render(request, "endpoints/_load_tests.html", load_test_context(request.user, endpoint))
    )


@post_only("endpoints:endpoint-detail", "name")
@login_required
def load_test_start(request, name):
    endpoint = _endpoint(request, name)
    form = LoadTestForm(request.POST)
    if form.is_valid():
        try:
            services.load_test_start(user=request.user, endpoint=endpoint, **form.cleaned_data)
        except ServiceError as exc:
            form_error(form, exc)
        else:
            if not is_htmx(request):
                messages.success(request, f"Load test of {endpoint.name} queued.")
                return redirect(f"{endpoint_url(endpoint)}#load-tests")
    if is_htmx(request):
        # htmx swaps only 2xx answers by default, so the panel with its errors comes back as 200.
        return render(
            request, "endpoints/_load_tests.html", load_test_context(request.user, endpoint, form=form)
        )
    status = 200 if not form.errors else (409 if form.non_field_errors() else 400)
    page = detail_context(request, endpoint, load_test_form=form)
    return render(request, "endpoints/endpoint_detail.html", page, status=status)


def endpoint_url(endpoint: Endpoint) -> str:
    return reverse("endpoints:endpoint-detail", kwargs={"name": endpoint.name})


@post_only("endpoints:endpoint-list")
@login_required
def load_test_cancel(request, pk):
    test = get_object_or_404(LoadTest.objects.for_user(request.user).select_related("endpoint"), pk=pk)
    try:
        services.load_test_cancel(user=request.user, test=test)
    except ServiceError as exc:
        flash_error(request, exc)  # shown by the page; the panel shows the test as it is
    else:
        if not is_htmx(request):
            messages.success(request, f"Load test {test.pk} is being cancelled.")
    if is_htmx(request):
        endpoint = _endpoint(request, test.endpoint.name)
        return render(request, "endpoints/_load_tests.html", load_test_context(request.user, endpoint))
    return redirect(f"{endpoint_url(test.endpoint)}#load-tests")


@login_required
def load_test_locustfile(request, pk):
    """The test's locustfile, to run the same test elsewhere (no secret in it)."""
    test = get_object_or_404(LoadTest.objects.for_user(request.user).select_related("endpoint"), pk=pk)
    response = HttpResponse(services.locustfile_for(test), content_type="text/x-python; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{locustfile_name(test.endpoint.name)}"'
    return response
