"""What every dashboard view shares: htmx detection, admin-only pages, service-error translation."""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme

from endpoints.services.errors import NotAllowed, ServiceError

PAGE_SIZE = 50


def is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def vary_on_htmx(response):
    """A URL that answers a page or a partial must not let caches mix the two up."""
    patch_vary_headers(response, ["HX-Request"])
    return response


def admin_required(view):
    """Pages only admins see at all (forms to create things, the audit log)."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("Only an admin can see this page.")
        return view(request, *args, **kwargs)

    return wrapper


def form_error(form, exc: ServiceError) -> None:
    """Put a service's refusal on the field it names (or on the form as a whole)."""
    if isinstance(exc, NotAllowed):
        raise PermissionDenied(exc.message)
    for each in (exc, *exc.also):
        field = each.field if each.field in form.fields else None
        if field is None or field not in form.errors:
            form.add_error(field, each.message)


def flash_error(request, exc: ServiceError) -> None:
    """For one-click actions with no form: show the refusal as a message on the next page."""
    if isinstance(exc, NotAllowed):
        raise PermissionDenied(exc.message)
    messages.error(request, exc.message)


def next_url(request, default: str) -> str:
    """Where a POSTed action returns to: a safe `next` from the form, else `default`."""
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return default


def posted(request, files: bool = False):
    """The data to bind a form to: the POST (even an empty one), or None to show a fresh form."""
    if request.method != "POST":
        return None
    return request.FILES if files else request.POST


def paginate(request, queryset, per_page: int = PAGE_SIZE):
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


def post_only(page: str, *kwargs_used: str):
    """An action only a POST carries out; a GET (a reload after it, a bookmark, a link opened in a
    new tab) is sent to the action's page, the URL named `page` with the view's `kwargs_used`,
    instead of the browser's bare "405" page."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method == "POST":
                return view(request, *args, **kwargs)
            if request.method in ("GET", "HEAD"):
                return redirect(page, **{name: kwargs[name] for name in kwargs_used})
            return HttpResponseNotAllowed(["POST"])

        return wrapper

    return decorate


def confirmed(request) -> bool:
    """Whether a form that asks first was answered: in the browser's dialog (portal.js adds
    `confirmed`) or on the page `ask_first` shows when the browser runs no JavaScript."""
    return bool(request.POST.get("confirmed"))


def ask_first(request, *, endpoint, title: str, question: str, button: str, plan_of=None):
    """The question a form asks before it changes what serves, as a page whose button sends the
    same fields again, confirmed; `plan_of()` gives the runtime's plan of the change."""
    plan, plan_error = [], ""
    if plan_of is not None:
        try:
            plan = plan_of()
        except ServiceError as exc:
            plan_error = f"The changes cannot be listed: {exc.message}"
    fields = [
        (name, value)
        for name in request.POST
        if name not in ("csrfmiddlewaretoken", "confirmed")
        for value in request.POST.getlist(name)
    ]
    back = next_url(request, reverse("endpoints:endpoint-detail", args=[endpoint.name]))
    context = {
        "endpoint": endpoint,
        "title": title,
        "question": question,
        "button": button,
        "plan": plan,
        "plan_error": plan_error,
        "fields": fields,
        "action": request.path,
        "back": back,
    }
    return render(request, "endpoints/confirm.html", context)
