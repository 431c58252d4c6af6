"""What the worker owes is kept in the database until settled, and sent again until it is."""

from datetime import timedelta

import pytest
from django.utils import timezone

from endpoints.models import ApiKey, KeyRequestStatus, OwedTask
from endpoints.services import owed
from endpoints.services.allowlist import allowlist_add
from endpoints.services.keys import api_key_revoke, key_request_approve, key_request_create, key_request_issue
from portal import queue
from portal.celery import app
from worker import tasks  # noqa: F401 (registers the tasks deliver() runs)


def deliver(sent: list) -> None:
    """Run what was sent, as a worker would, in this process."""
    while sent:
        name, args = sent.pop(0)
        app.tasks[name].apply(args=args)


def fall_due() -> None:
    OwedTask.objects.update(due_at=timezone.now() - timedelta(seconds=1))


def test_a_change_is_owed_in_its_transaction_and_sent_on_commit(
    admin, endpoint, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        allowlist_add(user=admin, endpoint=endpoint, cidr="192.0.2.0/24")

    assert sent == [(queue.APPLY_ACCESS, [endpoint.pk])]
    assert OwedTask.objects.filter(task=queue.APPLY_ACCESS, object_id=endpoint.pk).exists()
    assert owed.relay() == []  # sent moments ago: not due yet


def test_the_relay_sends_again_what_fell_due_with_growing_spacing(admin, endpoint, sent):
    allowlist_add(user=admin, endpoint=endpoint, cidr="192.0.2.0/24")  # its send never happened
    fall_due()

    assert owed.relay() == [f"{queue.APPLY_ACCESS}({endpoint.pk})"]
    assert sent == [(queue.APPLY_ACCESS, [endpoint.pk])]
    first = OwedTask.objects.get()
    fall_due()
    owed.relay()
    second = OwedTask.objects.get()
    assert (first.sends, second.sends) == (2, 3)
    assert second.due_at - timezone.now() > first.due_at - timezone.now() - timedelta(seconds=1)
    assert owed.relay() == []


def test_a_task_settles_what_it_did_but_not_a_change_made_while_it_ran(admin, endpoint, memory_runtime, sent):
    allowlist_add(user=admin, endpoint=endpoint, cidr="192.0.2.0/24")
    generation = owed.started(queue.APPLY_ACCESS, endpoint.pk, lease=60)
    allowlist_add(user=admin, endpoint=endpoint, cidr="198.51.100.0/24")  # while the task runs

    owed.settle(queue.APPLY_ACCESS, endpoint.pk, generation=generation)

    assert OwedTask.objects.filter(task=queue.APPLY_ACCESS).exists()
    fall_due()
    owed.relay()
    deliver(sent)
    assert not OwedTask.objects.exists()
    assert memory_runtime.access["iris-prod"].cidrs == ("192.0.2.0/24", "198.51.100.0/24")


@pytest.mark.django_db(transaction=True)
def test_changes_made_while_the_broker_was_away_all_reach_the_runtime_once_it_is_back(
    admin, member, team, endpoint, memory_runtime, sent, monkeypatch
):
    request = key_request_create(
        user=member, team=team, endpoint=endpoint, reason="Nightly batch", valid_days=30
    )
    key_request_issue(request_id=key_request_approve(user=admin, request=request).pk)
    key = ApiKey.objects.get(request=request)
    deliver(sent)
    pending = key_request_create(
        user=member, team=team, endpoint=endpoint, reason="Weekly reports", valid_days=30
    )

    monkeypatch.setattr("portal.celery.app.send_task", _refused)  # the broker goes away
    key_request_approve(user=admin, request=pending)
    api_key_revoke(user=admin, key=key)
    allowlist_add(user=admin, endpoint=endpoint, cidr="192.0.2.0/24")
    owed.relay()  # beat's relay, while the broker is still away
    monkeypatch.setattr(
        "portal.celery.app.send_task", lambda name, args=None, **kw: sent.append((name, args))
    )

    fall_due()
    owed.relay()
    deliver(sent)

    pending.refresh_from_db()
    assert pending.status == KeyRequestStatus.ISSUED
    assert memory_runtime.keys[key.cloud_name] is True  # revoked at the runtime
    policy = memory_runtime.access["iris-prod"]
    assert [k.revoked for k in policy.keys if k.prefix == key.prefix] == [True]
    assert policy.cidrs == ("192.0.2.0/24",)
    assert not OwedTask.objects.exists()


def _refused(name, args=None, **kwargs):
    raise ConnectionRefusedError(111, "Connection refused")
