"""The worker's tasks by name, and the one way the portal sends them.

Messages carry only ids; the database holds the state. Inside a transaction a task is sent once
the transaction commits, so the worker never looks for a row that is not there yet.
"""

DEPLOY = "worker.deploy"
ISSUE_KEY = "worker.issue_key"
REVOKE_KEY = "worker.revoke_key"
RESTORE_KEY = "worker.restore_key"
APPLY_ACCESS = "worker.apply_access"
RECONCILE = "worker.reconcile"
EXPIRE_KEYS = "worker.expire_keys"


def send(task: str, *args: int, task_id: str | None = None) -> None:
    """Send `task` now."""
    from portal.celery import app

    app.send_task(task, args=list(args), task_id=task_id)


def send_on_commit(task: str, *args: int, task_id: str | None = None) -> None:
    """Send `task` when the current transaction commits (at once outside one)."""
    from django.db import transaction

    transaction.on_commit(lambda: send(task, *args, task_id=task_id))
