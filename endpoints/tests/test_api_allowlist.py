"""The allowlist API: list, add and remove the CIDRs that may call an endpoint."""

from rest_framework.test import APIClient

from endpoints.models import AllowlistEntry, AuditEvent
from endpoints.services.allowlist import allowlist_add


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def test_an_admin_allows_a_cidr(admin, endpoint):
    response = api(admin).post(
        f"/api/v1/endpoints/{endpoint.name}/allowlist/",
        {"cidr": "10.1.0.0/16", "note": "office"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    entry = AllowlistEntry.objects.get()
    assert response.json() == {
        "id": entry.pk,
        "cidr": "10.1.0.0/16",
        "note": "office",
        "added_by": "ada",
        "added_at": response.json()["added_at"],
    }
    assert (entry.endpoint, entry.added_by) == (endpoint, admin)
    assert AuditEvent.objects.get(action="allowlist.add").details == {"cidr": "10.1.0.0/16", "note": "office"}


def test_a_single_address_is_stored_as_a_cidr(admin, endpoint):
    response = api(admin).post(f"/api/v1/endpoints/{endpoint.name}/allowlist/", {"cidr": "2001:db8::1"})
    assert response.status_code == 201
    assert AllowlistEntry.objects.get().cidr == "2001:db8::1/128"


def test_an_invalid_cidr_is_refused(admin, endpoint):
    response = api(admin).post(f"/api/v1/endpoints/{endpoint.name}/allowlist/", {"cidr": "10.0.0.300/8"})
    assert response.status_code == 422  # digits and dots, as the schema asks, but no address
    assert response.json() == {
        "detail": "'10.0.0.300/8' is not a valid IPv4 or IPv6 address or CIDR range.",
        "field": "cidr",
        "code": "invalid",
    }
    assert not AllowlistEntry.objects.exists()


def test_a_cidr_with_host_bits_set_suggests_the_network(admin, endpoint):
    response = api(admin).post(f"/api/v1/endpoints/{endpoint.name}/allowlist/", {"cidr": "10.0.0.7/24"})
    assert response.status_code == 422
    assert response.json()["detail"] == "10.0.0.7/24 has host bits set; did you mean 10.0.0.0/24?"


def test_a_cidr_already_allowed_answers_409(admin, endpoint):
    allowlist_add(user=admin, endpoint=endpoint, cidr="10.1.0.0/16")
    response = api(admin).post(f"/api/v1/endpoints/{endpoint.name}/allowlist/", {"cidr": "10.1.0.0/16"})
    assert response.status_code == 409
    assert response.json()["field"] == "cidr"
    assert AllowlistEntry.objects.count() == 1


def test_everyone_signed_in_reads_the_allowlist(admin, member, endpoint):
    allowlist_add(user=admin, endpoint=endpoint, cidr="192.168.0.0/24")
    allowlist_add(user=admin, endpoint=endpoint, cidr="10.0.0.0/8")
    response = api(member).get(f"/api/v1/endpoints/{endpoint.name}/allowlist/")
    assert response.status_code == 200
    assert [row["cidr"] for row in response.json()["results"]] == ["10.0.0.0/8", "192.168.0.0/24"]


def test_a_team_member_cannot_edit_the_allowlist(admin, member, endpoint):
    entry = allowlist_add(user=admin, endpoint=endpoint, cidr="10.0.0.0/8")
    added = api(member).post(f"/api/v1/endpoints/{endpoint.name}/allowlist/", {"cidr": "10.2.0.0/16"})
    removed = api(member).delete(f"/api/v1/endpoints/{endpoint.name}/allowlist/{entry.pk}/")
    assert (added.status_code, removed.status_code) == (403, 403)
    assert list(AllowlistEntry.objects.values_list("cidr", flat=True)) == ["10.0.0.0/8"]


def test_an_admin_removes_an_entry(admin, endpoint):
    entry = allowlist_add(user=admin, endpoint=endpoint, cidr="10.0.0.0/8")
    response = api(admin).delete(f"/api/v1/endpoints/{endpoint.name}/allowlist/{entry.pk}/")
    assert response.status_code == 204
    assert not AllowlistEntry.objects.exists()
    assert AuditEvent.objects.get(action="allowlist.remove").details == {"cidr": "10.0.0.0/8"}


def test_an_entry_of_another_endpoint_cannot_be_removed_through_this_one(admin, endpoint):
    from endpoints.services.endpoints import endpoint_create

    other = endpoint_create(user=admin, name="other")
    entry = allowlist_add(user=admin, endpoint=other, cidr="10.0.0.0/8")
    response = api(admin).delete(f"/api/v1/endpoints/{endpoint.name}/allowlist/{entry.pk}/")
    assert response.status_code == 404
    assert AllowlistEntry.objects.filter(pk=entry.pk).exists()
