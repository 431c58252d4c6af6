"""The Django admin: records are there to read; only teams are edited there."""

import pytest
from django.contrib.auth import get_user_model

from endpoints.models import ApiKeyRequest
from endpoints.services.keys import key_request_approve, key_request_create, key_request_issue


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", password="root-password-1")


RECORDS = [
    "team",
    "mlmodel",
    "modelversion",
    "endpoint",
    "deployment",
    "apikeyrequest",
    "apikey",
    "allowlistentry",
    "auditevent",
]


@pytest.mark.parametrize("record", RECORDS)
def test_every_record_has_an_admin_list(client, superuser, endpoint, iris_version, record):
    client.force_login(superuser)
    assert client.get(f"/admin/endpoints/{record}/").status_code == 200


def test_records_written_by_the_services_cannot_be_added_or_changed_in_the_admin(client, superuser, endpoint):
    client.force_login(superuser)
    assert client.get("/admin/endpoints/endpoint/add/").status_code == 403
    page = client.get(f"/admin/endpoints/endpoint/{endpoint.pk}/change/").content.decode()
    assert 'name="_save"' not in page
    assert client.get("/admin/endpoints/team/add/").status_code == 200


def test_the_admin_never_shows_a_sealed_key(
    client, superuser, admin, member, team, endpoint, django_capture_on_commit_callbacks
):
    request = key_request_create(user=member, team=team, endpoint=endpoint, reason="Nightly scoring job")
    key_request_approve(user=admin, request=request)
    key_request_issue(request_id=request.pk)
    sealed = ApiKeyRequest.objects.get().sealed_secret
    client.force_login(superuser)
    page = client.get(f"/admin/endpoints/apikeyrequest/{request.pk}/change/").content.decode()
    assert sealed and sealed not in page
