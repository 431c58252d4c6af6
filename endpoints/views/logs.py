"""The endpoint's log: the panel's JSON feed (polled with a cursor) and a page of its own.

    GET /endpoints/iris/logs/?level=WARNING&q=403&format=json        the newest entries that match
    GET /endpoints/iris/logs/?level=WARNING&q=403&after=<cursor>&format=json   only those written since

The page (without `format=json`) shows the same entries server-rendered: the panel's filter form
submits to it, so filtering works without JavaScript too.
"""

import re

from django import forms
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render

from endpoints.models import Endpoint
from endpoints.services.errors import ServiceError
from endpoints.services.logs import endpoint_log_read, log_poll_seconds
from endpoints.views.common import admin_required
from worker.runtimes.logs import LEVELS, MAX_CURSOR, MAX_LIMIT, MAX_TEXT, LogPage, LogQuery

LEVEL_CHOICES = [("", "All levels"), *((level, f"{level.title()} and above") for level in LEVELS)]


class LogFilterForm(forms.Form):
    level = forms.ChoiceField(choices=LEVEL_CHOICES, required=False, label="Level")
    q = forms.CharField(required=False, max_length=MAX_TEXT, strip=False, label="Contains")
    after = forms.CharField(required=False, max_length=MAX_CURSOR, widget=forms.HiddenInput)
    limit = forms.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT, widget=forms.HiddenInput)

    def query(self) -> LogQuery:
        data = self.cleaned_data
        return LogQuery(
            level=data["level"] or "",
            text=data["q"] or "",
            after=data["after"] or "",
            limit=data["limit"] or 200,
        )


RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$")


def shown_time(text: str) -> str:
    """An entry's RFC 3339 UTC time as the pages write times, to the millisecond:
    `2026-12-06 03:47:40.123 UTC` (as it came when it is not in that form; a dash when none)."""
    match = RFC3339.match(text)
    if not match:
        return text or "—"
    return f"{match[1]} {match[2]}.{(match[3] or '').ljust(3, '0')[:3]} UTC"


def page_json(page: LogPage) -> dict:
    body = page.as_json()
    for entry in body["entries"]:
        entry["shown_time"] = shown_time(entry["time"])
    return body


def _errors(form: LogFilterForm) -> str:
    return " ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())


@admin_required
def endpoint_logs(request, name):
    endpoint = get_object_or_404(Endpoint.objects.for_user(request.user).with_live(), name=name)
    wants_json = request.GET.get("format") == "json"
    form = LogFilterForm(request.GET)
    page, error, status = None, "", 200
    if form.is_valid():
        try:
            page = endpoint_log_read(user=request.user, endpoint=endpoint, query=form.query())
        except ServiceError as exc:
            error, status = exc.message, 503 if exc.code == "unavailable" else 400
    else:
        error, status = f"The log cannot be read that way: {_errors(form)}", 400
    if wants_json:
        body = {"error": error} if page is None else page_json(page)
        return JsonResponse({**body, "poll_seconds": log_poll_seconds()}, status=status)
    entries = page_json(page)["entries"] if page else []
    context = {"endpoint": endpoint, "form": form, "page": page, "entries": entries, "error": error}
    return render(request, "endpoints/endpoint_logs.html", context, status=status)
