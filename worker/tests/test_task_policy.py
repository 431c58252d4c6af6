"""The retry policy every runtime task shares: a final failure is written on the row and in the
audit log, whichever task it was.

The tasks run with Celery's `Task.apply()` (in this process, each retry carried out at once as the
next eager run, `request.retries` counted as a worker counts it) against the memory runtime told
to fail; the integration tests run a real worker.
"""

import pytest
from django.urls import reverse

from endpoints.models import ApiKey, ApiKeyRequest, AuditEvent, KeyRequestStatus
from endpoints.services.keys import (
    api_key_revoke,
    key_request_approve,
    key_request_create,
    key_request_issue,
)
from worker import tasks
from worker.runtimes.base import PermanentError, TransientError


@pytest.fixture
def approved(admin, member, team, endpoint, memory_runtime) -> ApiKeyRequest:
    request = key_request_create(
        user=member, team=team, endpoint=endpoint, reason="Scoring the nightly batch", valid_days=30
    )
    key_request_approve(user=admin, request=request)
    return request


@pytest.fixture
def key(approved) -> ApiKey:
    key_request_issue(request_id=approved.pk)
    return ApiKey.objects.get(request=approved)


def test_a_revoke_the_runtime_never_carries_out_is_written_on_the_key_and_shown(
    client, admin, key, memory_runtime
):
    api_key_revoke(user=admin, key=key)
    memory_runtime.fail("revoke_key", *[TransientError("apikeys.googleapis.com unavailable")] * 9)

    assert tasks.revoke_key.apply(args=[key.pk]).get() == "failed"

    key.refresh_from_db()
    assert memory_runtime.runs["revoke_key"] == tasks.revoke_key.max_retries + 1
    assert key.runtime_error == "Gave up after retries: apikeys.googleapis.com unavailable"
    event = AuditEvent.objects.get(action="api_key.revoke_failed")
    assert event.target_id == str(key.pk) and event.actor is None
    client.force_login(admin)
    page = client.get(reverse("endpoints:key-list")).content.decode()
    assert "Not carried out by the runtime: Gave up after retries: apikeys.googleapis.com" in page

    # The next try that goes through clears it.
    assert tasks.revoke_key.apply(args=[key.pk]).get() is None
    key.refresh_from_db()
    assert key.runtime_error == "" and memory_runtime.keys[key.cloud_name] is True


def test_a_key_the_runtime_refuses_to_issue_fails_its_request_with_the_reason(approved, memory_runtime):
    memory_runtime.fail("issue_key", PermanentError("API Keys: quota exceeded for project"))

    assert tasks.issue_key.apply(args=[approved.pk]).get() == "failed"

    approved.refresh_from_db()
    assert approved.status == KeyRequestStatus.FAILED
    assert approved.error == "API Keys: quota exceeded for project"
    assert AuditEvent.objects.get(action="key_request.failed").details == {
        "error": "API Keys: quota exceeded for project"
    }
    assert memory_runtime.runs["issue_key"] == 1  # permanent: not retried


def test_an_error_the_runtime_did_not_classify_is_retried_like_a_transient_one(approved, memory_runtime):
    memory_runtime.fail("issue_key", ConnectionResetError("connection reset by peer"))

    assert tasks.issue_key.apply(args=[approved.pk]).get() is None

    approved.refresh_from_db()
    assert approved.status == KeyRequestStatus.ISSUED
    assert memory_runtime.runs["issue_key"] == 2
