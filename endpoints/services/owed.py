"""What the worker owes: every accepted change's task, kept in the database until it is settled.

    with transaction.atomic():
        ...                                    # the change itself
        owe(queue.REVOKE_KEY, key.pk)          # the promise, in the same transaction

The task is sent once the transaction commits; should the broker be away, or lose the message, or
the worker die with it, `relay` (run by beat every TASK_RELAY_SECONDS) sends it again when it falls
due, with growing spacing. The task's shared policy (worker/tasks.py) marks it `started`, pushes it
back while it retries, and `settle`s it when its work is done or its failure recorded. The database
is the only truth; the broker only makes things happen sooner.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from endpoints.models import OwedTask
from portal import queue

log = logging.getLogger(__name__)

MAX_RESEND_SECONDS = 300
RELAY_BATCH = 500


def resend_after(sends: int) -> timedelta:
    """How long after its `sends`-th send an unsettled task is sent again."""
    return timedelta(seconds=min(settings.TASK_RESEND_SECONDS * 2 ** max(sends - 1, 0), MAX_RESEND_SECONDS))


def owe(task: str, object_id: int, *, task_id: str | None = None) -> None:
    """Record, in the caller's transaction, that `task` is owed for `object_id`; send it on commit.

    Owing again what is already owed counts one more change (the running task will not settle it)
    and makes it due soon.
    """
    now = timezone.now()
    OwedTask.objects.bulk_create(
        [OwedTask(task=task, object_id=object_id, due_at=now + resend_after(1))],
        update_conflicts=True,
        unique_fields=["task", "object_id"],
        update_fields=["due_at", "sends"],
    )
    # bulk_create's upsert cannot increment; a second statement in the same transaction can.
    OwedTask.objects.filter(task=task, object_id=object_id).update(generation=F("generation") + 1)
    transaction.on_commit(lambda: queue.send(task, object_id, task_id=task_id))


def relay() -> list[str]:
    """Send again every owed task that fell due; returns what was sent (as 'task(id)')."""
    now = timezone.now()
    sent = []
    for owed in OwedTask.objects.filter(due_at__lte=now).order_by("due_at")[:RELAY_BATCH]:
        # Only the relay that moves the row on sends it.
        moved = OwedTask.objects.filter(pk=owed.pk, sends=owed.sends).update(
            sends=owed.sends + 1, due_at=now + resend_after(owed.sends + 1)
        )
        if moved and queue.send(owed.task, owed.object_id):
            sent.append(str(owed))
    if sent:
        log.info("sent again %d owed task(s): %s", len(sent), ", ".join(sent[:20]))
    return sent


def started(task: str, object_id: int, *, lease: float) -> int | None:
    """A worker took the task: not due again for `lease` seconds. Returns the generation it
    works for (None when nothing is owed, e.g. a task run by hand).

    Waits for a change still committing on the same row, so the task then reads that change.
    """
    with transaction.atomic():
        owed = OwedTask.objects.select_for_update().filter(task=task, object_id=object_id).first()
        if owed is None:
            return None
        owed.due_at = timezone.now() + timedelta(seconds=lease)
        owed.save(update_fields=["due_at"])
        return owed.generation


def postpone(task: str, object_id: int, *, seconds: float) -> None:
    """The task will try again by itself in `seconds`: do not send it before then (and a margin)."""
    due: datetime = timezone.now() + timedelta(seconds=seconds) + resend_after(1)
    OwedTask.objects.filter(task=task, object_id=object_id).update(due_at=due)


def settle(task: str, object_id: int, *, generation: int | None) -> None:
    """The task did what was owed up to `generation` (or recorded why it could not)."""
    if generation is not None:
        OwedTask.objects.filter(task=task, object_id=object_id, generation__lte=generation).delete()
