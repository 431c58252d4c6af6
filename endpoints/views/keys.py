"""API keys: teams request them, admins decide, the team sees each key once; admins revoke."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from endpoints.api.errors import STATUS_FOR_CODE
from endpoints.forms import DecisionForm, KeyRequestForm, KeyRotateForm
from endpoints.models import ApiKey, ApiKeyRequest, KeyRequestStatus
from endpoints.services import keys as services
from endpoints.services.errors import NotAllowed, ServiceError
from endpoints.views.common import (
    flash_error,
    form_error,
    is_htmx,
    next_url,
    paginate,
    post_only,
    posted,
    vary_on_htmx,
)


@login_required
def key_request_list(request):
    requests = ApiKeyRequest.objects.for_user(request.user).select_related(
        "team", "endpoint", "requested_by", "decided_by"
    )
    pending = None
    if request.user.is_staff:
        pending = requests.filter(status=KeyRequestStatus.PENDING).order_by("requested_at", "id")
        requests = requests.exclude(status=KeyRequestStatus.PENDING)
    return render(
        request,
        "endpoints/key_request_list.html",
        {"pending": pending, "page": paginate(request, requests)},
    )


@login_required
def key_request_create(request):
    initial = {"endpoint": request.GET.get("endpoint")}
    form = KeyRequestForm(posted(request), user=request.user, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            key_request = services.key_request_create(user=request.user, **form.cleaned_data)
        except ServiceError as exc:
            form_error(form, exc)
        else:
            messages.success(request, "Request sent. An admin will decide on it; this page shows its status.")
            return redirect("endpoints:key-request-detail", pk=key_request.pk)
    elif request.method == "POST":
        # The form refused some fields: say what the service thinks of the others too, all at once.
        data = form.cleaned_data
        for problem in services.key_request_problems(
            user=request.user,
            team=data.get("team"),
            endpoint=data.get("endpoint"),
            reason=data.get("reason", ""),
            valid_days=data.get("valid_days"),
        ):
            if problem.field not in form.errors:
                form.add_error(problem.field, problem.message)
    has_team = form.fields["team"].queryset.exists()
    return render(
        request,
        "endpoints/key_request_create.html",
        {"form": form, "has_team": has_team},
        status=400 if form.errors else 200,
    )


def _request_for(request, pk) -> ApiKeyRequest:
    return get_object_or_404(
        ApiKeyRequest.objects.for_user(request.user).select_related(
            "team", "endpoint", "requested_by", "decided_by", "api_key"
        ),
        pk=pk,
    )


def _request_context(request, key_request: ApiKeyRequest, **extra) -> dict:
    in_team = key_request.team.members.filter(pk=request.user.pk).exists()
    return {
        "key_request": key_request,
        "in_team": in_team,
        "decision_form": DecisionForm(),
        **extra,
    }


@login_required
def key_request_detail(request, pk):
    """The request's page; htmx polls it for the status partial while the key is being issued."""
    key_request = _request_for(request, pk)
    template = (
        "endpoints/_key_request_status.html" if is_htmx(request) else "endpoints/key_request_detail.html"
    )
    return vary_on_htmx(render(request, template, _request_context(request, key_request)))


@post_only("endpoints:key-request-detail", "pk")
@login_required
def key_request_reveal(request, pk):
    """Show the issued key, once. A POST, so a link prefetch or a crawler cannot use up the reveal."""
    key_request = _request_for(request, pk)
    try:
        secret = services.api_key_reveal(user=request.user, request=key_request)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from None
    except ServiceError as exc:
        # The request's page in its new state, with the reason, answering the refusal's status.
        key_request = _request_for(request, pk)
        context = _request_context(request, key_request, reveal_error=exc.message)
        return render(
            request,
            "endpoints/key_request_detail.html",
            context,
            status=STATUS_FOR_CODE.get(exc.code, 400),
        )
    response = render(
        request,
        "endpoints/key_request_detail.html",
        _request_context(request, key_request, secret=secret),
    )
    add_never_cache_headers(response)
    return response


def _decide(request, pk, decide, done: str):
    key_request = _request_for(request, pk)
    form = DecisionForm(request.POST)
    note = form.cleaned_data["note"] if form.is_valid() else ""
    try:
        decide(user=request.user, request=key_request, note=note)
    except ServiceError as exc:
        flash_error(request, exc)
    else:
        messages.success(request, f"Request {key_request.pk} from {key_request.team} {done}.")
    return redirect(next_url(request, reverse("endpoints:key-request-list")))


@post_only("endpoints:key-request-detail", "pk")
@login_required
def key_request_reissue(request, pk):
    """Issue a new key for a request whose key expired unseen (admins); go to the new request."""
    key_request = _request_for(request, pk)
    try:
        new = services.key_request_reissue(user=request.user, request=key_request)
    except ServiceError as exc:
        flash_error(request, exc)
        return redirect("endpoints:key-request-detail", pk=key_request.pk)
    messages.success(
        request, f"Request {key_request.pk} re-issued as this request: the key is being issued again."
    )
    return redirect("endpoints:key-request-detail", pk=new.pk)


@post_only("endpoints:key-request-detail", "pk")
@login_required
def key_request_approve(request, pk):
    return _decide(request, pk, services.key_request_approve, "approved: the key is being issued")


@post_only("endpoints:key-request-detail", "pk")
@login_required
def key_request_reject(request, pk):
    return _decide(request, pk, services.key_request_reject, "rejected")


@login_required
def key_list(request):
    keys = ApiKey.objects.for_user(request.user).select_related("endpoint", "team", "request")
    return render(request, "endpoints/key_list.html", {"page": paginate(request, keys)})


def _key_action(request, pk, act, done: str):
    """Run a one-click key action; from htmx, answer with the key's table row in its new state."""
    key = get_object_or_404(ApiKey.objects.for_user(request.user).select_related("endpoint", "team"), pk=pk)
    error = None
    try:
        act(key)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from None
    except ServiceError as exc:
        error = exc.message
    if is_htmx(request):
        key.refresh_from_db()
        context = {"key": key, "error": error, "next": next_url(request, reverse("endpoints:key-list"))}
        return render(request, "endpoints/_key_row.html", context)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, done.format(key=key))
    return redirect(next_url(request, reverse("endpoints:key-list")))


@post_only("endpoints:key-list")
@login_required
def key_revoke(request, pk):
    """Revoke a key."""
    return _key_action(
        request,
        pk,
        lambda key: services.api_key_revoke(user=request.user, key=key),
        "Key {key.prefix}… revoked.",
    )


@post_only("endpoints:key-list")
@login_required
def key_restore(request, pk):
    """Undo a revoke (within 30 days of it)."""
    return _key_action(
        request,
        pk,
        lambda key: services.api_key_restore(user=request.user, key=key),
        "Key {key.prefix}… restored: it works again.",
    )


@post_only("endpoints:key-list")
@login_required
def key_rotate(request, pk):
    """Issue the key's team a new key; the old one is revoked after the overlap."""
    form = KeyRotateForm(request.POST)
    hours = form.cleaned_data["overlap_hours"] if form.is_valid() else request.POST.get("overlap_hours")
    return _key_action(
        request,
        pk,
        lambda key: services.api_key_rotate(user=request.user, key=key, overlap_hours=hours),
        "Key {key.prefix}… is being rotated: its team reveals the new key on the request's page; "
        "the old one is revoked {key.revoke_after:%Y-%m-%d %H:%M} UTC.",
    )
