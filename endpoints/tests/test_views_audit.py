"""The audit log page: admins only, newest first, paginated."""

from django.urls import reverse

from endpoints.models import AuditEvent
from endpoints.services.endpoints import endpoint_create

AUDIT = reverse("endpoints:audit-list")


def test_an_admin_reads_the_audit_log_newest_first(client, admin):
    endpoint_create(user=admin, name="first-one")
    endpoint_create(user=admin, name="second-one")
    client.force_login(admin)
    page = client.get(AUDIT).content.decode()
    assert "endpoint.create" in page
    assert page.index("second-one") < page.index("first-one")


def test_the_audit_log_is_paginated(client, admin):
    client.force_login(admin)  # itself audited as a sign-in
    AuditEvent.objects.bulk_create(
        AuditEvent(
            actor=admin, action="test.event", target_type="Thing", target_id=str(n), target_repr=f"thing {n}"
        )
        for n in range(119)
    )
    assert AuditEvent.objects.count() == 120
    first = client.get(AUDIT)
    assert len(first.context["page"].object_list) == 50
    assert "Page 1 of 3" in first.content.decode()
    assert client.get(AUDIT, {"page": 3}).context["page"].object_list.__len__() == 20


def test_team_members_cannot_read_the_audit_log(client, member):
    client.force_login(member)
    assert client.get(AUDIT).status_code == 403
    assert (
        reverse("endpoints:audit-list") not in client.get(reverse("endpoints:endpoint-list")).content.decode()
    )
