"""IP allowlists: add and remove CIDRs on an endpoint, inline with htmx or as plain forms."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render

from endpoints.forms import AllowlistEntryForm
from endpoints.models import Endpoint
from endpoints.services import allowlist as services
from endpoints.services.errors import NotAllowed, ServiceError
from endpoints.views.common import admin_required, form_error, is_htmx, post_only
from endpoints.views.endpoints import detail_context


def _answer(request, endpoint, form, status=200, error=None, confirm_remove=None, confirm_everyone=None):
    """The allowlist section for htmx (with the access policy state, out of band); the whole
    endpoint page otherwise."""
    endpoint.refresh_from_db()  # the service bumped its access revision
    if is_htmx(request):
        context = {
            "endpoint": endpoint,
            "allowlist": endpoint.allowlist.select_related("added_by"),
            "allowlist_form": form,
            "allowlist_error": error,
            "confirm_remove": confirm_remove,
            "confirm_everyone": confirm_everyone,
            "oob": True,
        }
        return render(request, "endpoints/_allowlist.html", context, status=status)
    if status == 200 and confirm_remove is None and confirm_everyone is None:
        return redirect("endpoints:endpoint-detail", name=endpoint.name)
    context = detail_context(request, endpoint, allowlist_form=form)
    context["confirm_remove"] = confirm_remove
    context["confirm_everyone"] = confirm_everyone
    return render(request, "endpoints/endpoint_detail.html", context, status=status)


@post_only("endpoints:endpoint-detail", "name")
@admin_required
def allowlist_add(request, name):
    endpoint = get_object_or_404(Endpoint.objects.for_user(request.user).with_live(), name=name)
    form = AllowlistEntryForm(request.POST)
    if form.is_valid():
        try:
            entry = services.allowlist_add(user=request.user, endpoint=endpoint, **form.cleaned_data)
        except ServiceError as exc:
            if exc.code == services.CONFIRM_EVERYONE:
                # Ask in the page, saying what it means; add it only when the answer comes back.
                confirm = {"cidr": services.normalise_cidr(form.cleaned_data["cidr"]), "message": exc.message}
                confirm["note"] = form.cleaned_data["note"]
                return _answer(request, endpoint, form, confirm_everyone=confirm)
            form_error(form, exc)
        else:
            if not is_htmx(request):
                messages.success(request, f"{entry.cidr} added to the allowlist.")
            # A fresh, empty form for the next entry.
            return _answer(request, endpoint, AllowlistEntryForm())
    # htmx swaps only 2xx answers by default, so the form with its errors comes back as 200 there.
    return _answer(request, endpoint, form, status=200 if is_htmx(request) else 400)


@post_only("endpoints:endpoint-detail", "name")
@admin_required
def allowlist_remove(request, name, pk):
    endpoint = get_object_or_404(Endpoint.objects.for_user(request.user).with_live(), name=name)
    entry = get_object_or_404(endpoint.allowlist, pk=pk)
    if (
        endpoint.checks_addresses
        and request.POST.get("confirm") != "empty"
        and not endpoint.allowlist.exclude(pk=entry.pk).exists()
    ):
        # The last entry: once it goes, the endpoint refuses every caller. Ask first, in the page
        # itself (no script needed), and remove it only when the answer comes back.
        return _answer(request, endpoint, AllowlistEntryForm(), confirm_remove=entry)
    error = None
    try:
        services.allowlist_remove(user=request.user, entry=entry)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from None
    except ServiceError as exc:
        error = exc.message
    if not is_htmx(request):
        messages.add_message(
            request,
            messages.ERROR if error else messages.SUCCESS,
            error or f"{entry.cidr} removed from the allowlist.",
        )
    return _answer(request, endpoint, AllowlistEntryForm(), error=error)
