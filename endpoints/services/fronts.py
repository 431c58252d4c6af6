"""The HTTPS fronts of live endpoints, read from the runtime on beat's schedule.

An endpoint behind a load balancer answers over HTTPS only once its DNS name points at the
balancer's address and the provider has issued the managed certificate for it; until then the
dashboard shows the record to create and the certificate's status, not a live address. A
certificate that will never be issued (PROVISIONING_FAILED_PERMANENTLY: the name pointed elsewhere
for too long, say) is replaced by a new one, and the replacement is audited.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from endpoints.models import Endpoint
from endpoints.services.audit import audit_record
from endpoints.services.deployments import resources_of
from worker.runtimes import get_runtime
from worker.runtimes.base import RuntimeFailure
from worker.runtimes.resources import DeploymentResources

log = logging.getLogger(__name__)

FAILED_FOR_GOOD = "PROVISIONING_FAILED_PERMANENTLY"


def https_fronts_refresh() -> list[str]:
    """Read the certificate of every live endpoint that has an HTTPS front; returns those whose
    status changed."""
    runtime = get_runtime()
    changed = []
    fronted = Endpoint.objects.filter(deleted_at=None).exclude(https_address="")
    for endpoint in fronted.select_related("live_deployment"):
        live = endpoint.live_deployment
        try:
            front = runtime.https_front(endpoint.name, resources_of(live) if live else DeploymentResources())
        except RuntimeFailure as exc:
            log.warning("could not read the HTTPS front of %s: %s", endpoint.name, exc)
            continue
        status, detail = (front.certificate, front.detail) if front else ("", "")
        if status == FAILED_FOR_GOOD:
            try:
                made = runtime.replace_certificate(endpoint.name)
            except RuntimeFailure as exc:
                log.warning("could not replace the certificate of %s: %s", endpoint.name, exc)
                continue
            audit_record(
                actor=None,
                action="endpoint.certificate_replace",
                target=endpoint,
                details={"certificate": made, "failed": detail or status},
            )
            status, detail = "PROVISIONING", f"a new certificate, {made}, replaced one that ended in {status}"
        updated = Endpoint.objects.filter(pk=endpoint.pk, https_address=endpoint.https_address).update(
            certificate_status=status, certificate_detail=detail[:300], front_checked_at=timezone.now()
        )
        if updated and status != endpoint.certificate_status:
            changed.append(endpoint.name)
    return changed
