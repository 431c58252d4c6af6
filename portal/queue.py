"""The worker's tasks by name, and the one call that sends them.

Messages carry only ids; the database holds the state. Services owe a task through
`endpoints.services.owed` (kept in the database, sent on commit, sent again until settled), never
by sending it themselves.
"""

import logging

log = logging.getLogger(__name__)

DEPLOY = "worker.deploy"
ISSUE_KEY = "worker.issue_key"
REVOKE_KEY = "worker.revoke_key"
RESTORE_KEY = "worker.restore_key"
APPLY_ACCESS = "worker.apply_access"
RECONCILE = "worker.reconcile"
RELAY = "worker.relay"
EXPIRE_KEYS = "worker.expire_keys"
REFRESH_FRONTS = "worker.refresh_fronts"
SCRAPE_TRAFFIC = "worker.scrape_traffic"
PRUNE_TRAFFIC = "worker.prune_traffic"
ADVANCE_ROLLOUTS = "worker.advance_rollouts"
RUN_LOAD_TEST = "worker.run_load_test"


def send(task: str, *args: int, task_id: str | None = None) -> bool:
    """Send `task` now; False when the broker cannot take it.

    A failed send is logged, not raised: the change it carries is already committed, and beat's
    reconcile sends it again once the broker is back.
    """
    from portal.celery import app

    try:
        app.send_task(task, args=list(args), task_id=task_id)
    except Exception as exc:  # the broker's client raises its own kinds (kombu, redis, OSError)
        log.warning(
            "could not send %s%s (%s: %s); reconcile will send it again", task, args, type(exc).__name__, exc
        )
        return False
    return True
