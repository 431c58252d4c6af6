"""The portal while its broker or its database is away: accepted changes are kept and answered as
accepted; requests that need the database are told to come back, not shown a traceback."""

import socket

import pytest
from django.db import connection
from rest_framework.test import APIClient

from endpoints.models import ApiKey, Deployment, DeploymentStatus, KeyRequestStatus
from endpoints.services.keys import key_request_approve, key_request_create, key_request_issue
from portal.celery import app


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _drop_broker_connections() -> None:
    """Make the app build its connection and producer pools again from its broker_url."""
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker_away():
    """The Celery app pointed at a Redis address where nothing listens: every send is refused."""
    before = app.conf.broker_write_url
    _drop_broker_connections()
    app.conf.broker_write_url = f"redis://127.0.0.1:{closed_port()}/0"
    yield
    _drop_broker_connections()
    app.conf.broker_write_url = before


@pytest.mark.django_db(transaction=True)
def test_changes_accepted_while_the_broker_is_away_are_answered_and_kept(
    admin, member, team, endpoint, iris_version, broker_away, caplog
):
    request = key_request_create(
        user=member, team=team, endpoint=endpoint, reason="Nightly batch", valid_days=30
    )
    key_request_issue(request_id=key_request_approve(user=admin, request=request).pk)
    key = ApiKey.objects.get(request=request)
    pending = key_request_create(
        user=member, team=team, endpoint=endpoint, reason="Weekly sales reports", valid_days=30
    )
    client = api(admin)

    deploy = client.post(f"/api/v1/endpoints/{endpoint.name}/deploy/", {"model_version": iris_version.pk})
    approve = client.post(f"/api/v1/key-requests/{pending.pk}/approve/", {})
    revoke = client.post(f"/api/v1/keys/{key.pk}/revoke/", {})
    allow = client.post(f"/api/v1/endpoints/{endpoint.name}/allowlist/", {"cidr": "192.0.2.0/24"})

    assert [r.status_code for r in (deploy, approve, revoke, allow)] == [202, 200, 200, 201]
    assert Deployment.objects.get().status == DeploymentStatus.QUEUED
    pending.refresh_from_db()
    key.refresh_from_db()
    assert pending.status == KeyRequestStatus.APPROVED and key.revoked_at is not None
    assert endpoint.allowlist.filter(cidr="192.0.2.0/24").exists()
    refused = [r.getMessage() for r in caplog.records if r.name == "portal.queue"]
    assert any("could not send worker.deploy" in message for message in refused)
    assert any("could not send worker.revoke_key" in message for message in refused)


@pytest.fixture
def signed_in(client, admin):
    client.force_login(admin)
    return client


@pytest.fixture
def database_away(signed_in):
    """The web's database connection pointed at a port where no PostgreSQL listens (after the
    session was written)."""
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(closed_port())
    yield
    connection.close()
    connection.settings_dict["PORT"] = port


@pytest.mark.parametrize(("path", "kind"), [("/api/v1/endpoints/", "application/json"), ("/", "text/html")])
def test_while_the_database_is_away_requests_get_503_and_come_back_later(
    signed_in, database_away, path, kind
):
    signed_in.raise_request_exception = False
    response = signed_in.get(path)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Content-Type"].startswith(kind)
    assert "database is not answering" in response.content.decode()
