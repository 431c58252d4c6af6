"""Cloud setup: is the Google Cloud project ready for the gcp runtime? For admins.

Runs the read-only checks of `manage.py gcp_doctor` (`worker.runtimes.gcp.doctor`) with this web
server's credentials, each failure with the gcloud command that fixes it. Google's client
libraries are imported only when the page runs them (RUNTIME=gcp).
"""

from django.conf import settings
from django.shortcuts import render

from endpoints.forms import CloudSetupForm
from endpoints.views.common import admin_required


@admin_required
def cloud_setup(request):
    if settings.RUNTIME != "gcp":
        return render(request, "endpoints/cloud_setup.html", {"runtime": settings.RUNTIME})
    from worker.runtimes.gcp.clients import Context
    from worker.runtimes.gcp.config import GcpConfig
    from worker.runtimes.gcp.doctor import PRINCIPAL, run_checks

    form = CloudSetupForm(request.GET)
    cfg = GcpConfig.from_settings()
    checks = run_checks(Context(cfg), member=form.cleaned_data["member"] if form.is_valid() else "")
    context = {
        "runtime": settings.RUNTIME,
        "cfg": cfg,
        "form": form,
        "placeholder": PRINCIPAL,
        "checks": checks,
        "failed": sum(not check.ok for check in checks),
    }
    return render(request, "endpoints/cloud_setup.html", context)
