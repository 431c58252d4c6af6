"""The endpoint's traffic charts: a partial the endpoint page loads and refreshes (htmx), or a page
of its own without JavaScript."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render

from endpoints.charts import revision_rows, step_rows, traffic_charts
from endpoints.models import Endpoint
from endpoints.services.traffic import WINDOWS, endpoint_traffic
from endpoints.views.common import is_htmx, vary_on_htmx


@login_required
def endpoint_traffic_view(request, name):
    endpoint = get_object_or_404(Endpoint.objects.for_user(request.user).with_live(), name=name)
    window = request.GET.get("window", "hour")
    if window not in WINDOWS:
        window, problem = "hour", f"There is no {window[:20]!r} window: showing the last hour."
    else:
        problem = ""
    traffic = endpoint_traffic(endpoint=endpoint, window=window)
    context = {
        "endpoint": endpoint,
        "traffic": traffic,
        "windows": WINDOWS.values(),
        "charts": traffic_charts(traffic),
        "rows": revision_rows(traffic),
        "steps": step_rows(traffic),
        "problem": problem,
    }
    template = "endpoints/_charts.html" if is_htmx(request) else "endpoints/endpoint_traffic.html"
    return vary_on_htmx(render(request, template, context, status=400 if problem else 200))
