"""The audit log: what happened, who did it, to what; newest first, for admins."""

from django.shortcuts import render

from endpoints.models import AuditEvent
from endpoints.views.common import admin_required, paginate


@admin_required
def audit_list(request):
    events = AuditEvent.objects.for_user(request.user).select_related("actor")
    return render(request, "endpoints/audit_list.html", {"page": paginate(request, events)})
