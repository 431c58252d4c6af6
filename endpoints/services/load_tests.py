"""Load tests: an admin asks for one on a serving endpoint, the worker runs it with Locust, the
endpoint page and the API show its figures as they come and once it ends.

    test = load_test_start(user=admin, endpoint=endpoint, users=10, spawn_rate=2, duration_seconds=30)
    ... worker.run_load_test(test.pk) -> load_test_run(test_id=test.pk) ...
    load_test_cancel(user=admin, test=test)

The test calls the endpoint's public URL, as its users do, with the live version's example rows
(one at a time, and all of them as a batch: see `endpoints.locustfile`), and, on an endpoint that
checks keys, with a key made for the test and revoked when it ends (`keys.load_test_key_issue`).
Locust runs in a child process (`worker.load_test`): it patches the standard library with gevent
on import, which neither the portal nor the Celery worker may have. The child prints a snapshot
every second; the task stores each, and the final figures, on the LoadTest.

One test runs at a time per endpoint, none while an operation (a deploy, a stop...) is under way,
and each is bounded: LOAD_TEST_MAX_USERS, LOAD_TEST_MAX_SPAWN_RATE, LOAD_TEST_MAX_SECONDS; the
child is killed LOAD_TEST_GRACE_SECONDS past its duration. The run is owed work: if the worker
running it dies, its claim lapses and the task, sent again, records the test as failed and revokes
its key (which also expires by itself soon after).
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from endpoints.locustfile import locustfile_name, locustfile_text
from endpoints.models import AccessMode, Endpoint, LoadTest, LoadTestStatus
from endpoints.services import access, claims, keys
from endpoints.services.audit import audit_record
from endpoints.services.errors import ServiceError, require_admin
from endpoints.services.owed import owe
from portal import queue

log = logging.getLogger(__name__)

#: What `load_test_run` answers while another worker runs the test.
BUSY = "another worker is running this load test"
#: How long the run waits for the test's key to be in force at the runtime.
KEY_APPLY_SECONDS = 60
STDERR_KEPT = 2000
#: Environment variables the child process gets besides API_KEY: none of the portal's secrets.
CHILD_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")


@dataclass(frozen=True)
class Limits:
    users: int
    spawn_rate: int
    seconds: int


def limits() -> Limits:
    return Limits(
        settings.LOAD_TEST_MAX_USERS, settings.LOAD_TEST_MAX_SPAWN_RATE, settings.LOAD_TEST_MAX_SECONDS
    )


def load_test_problems(*, users, spawn_rate, duration_seconds) -> list[ServiceError]:
    """Everything wrong with the asked figures, each naming its field."""
    caps = limits()
    problems = []
    for field, value, most, what in (
        ("users", users, caps.users, "users"),
        ("spawn_rate", spawn_rate, caps.spawn_rate, "users started per second"),
        ("duration_seconds", duration_seconds, caps.seconds, "seconds"),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            problems.append(ServiceError(f"Choose 1 to {most} {what}.", field=field))
    return problems


def load_test_refusal(endpoint: Endpoint) -> str:
    """Why no load test can start on `endpoint` now ("" when one can)."""
    if endpoint.deleted_at or endpoint.deletion_pending:
        return "This endpoint is deleted or being deleted."
    if endpoint.live_deployment_id is None:
        return "Nothing is live on this endpoint: deploy a version before testing it."
    if endpoint.stopped_at:
        return "This endpoint is stopped: start it before testing it."
    if not endpoint.public_url:
        return "The endpoint has no URL yet."
    if endpoint.access_mode == AccessMode.IDENTITY:
        return (
            "This endpoint lets in only bearer tokens from its identity provider, which the portal cannot "
            "obtain for a test."
        )
    if endpoint.deployments.active().exists():
        return "An operation on this endpoint is under way (a deploy, stop or start): wait for it to finish."
    running = endpoint.load_tests.active().first()
    if running is not None:
        return f"Load test {running.pk} is already {running.get_status_display().lower()} on this endpoint."
    return ""


def load_test_start(*, user, endpoint: Endpoint, users, spawn_rate, duration_seconds) -> LoadTest:
    """Queue a load test of `endpoint` (admins); the worker runs it."""
    require_admin(user)
    problems = load_test_problems(users=users, spawn_rate=spawn_rate, duration_seconds=duration_seconds)
    if problems:
        first, *others = problems
        first.also = others
        raise first
    with transaction.atomic():
        locked = (
            Endpoint.objects.select_for_update(of=("self",))
            .select_related("live_deployment__model_version")
            .get(pk=endpoint.pk)
        )
        refusal = load_test_refusal(locked)
        if refusal:
            raise ServiceError(refusal, code="conflict")
        live = locked.live_deployment
        assert live is not None and live.model_version is not None  # a serving endpoint has both
        try:
            with transaction.atomic():
                test = LoadTest.objects.create(
                    endpoint=locked,
                    requested_by=user,
                    users=users,
                    spawn_rate=spawn_rate,
                    duration_seconds=duration_seconds,
                    url=locked.public_url.rstrip("/"),
                    rows=live.model_version.example_set["rows"],
                )
        except IntegrityError:  # another request started one meanwhile
            raise ServiceError("A load test is already running on this endpoint.", code="conflict") from None
        audit_record(
            actor=user,
            action="load_test.start",
            target=test,
            details={
                "endpoint": locked.name,
                "users": users,
                "spawn_rate": spawn_rate,
                "seconds": duration_seconds,
            },
        )
        owe(queue.RUN_LOAD_TEST, test.pk)
    return test


def load_test_cancel(*, user, test: LoadTest) -> LoadTest:
    """Stop a queued or running test (admins): a queued one at once, a running one within a second
    or so (the worker ends its process and records what it measured until then)."""
    require_admin(user)
    now = timezone.now()
    with transaction.atomic():
        locked = LoadTest.objects.select_for_update().get(pk=test.pk)
        if locked.status == LoadTestStatus.QUEUED:
            locked.status, locked.finished_at = LoadTestStatus.CANCELLED, now
        elif locked.status == LoadTestStatus.RUNNING and locked.cancel_requested_at is None:
            locked.cancel_requested_at = now
        else:
            state = "being cancelled" if locked.is_active else locked.get_status_display().lower()
            raise ServiceError(f"This load test is already {state}.", code="conflict")
        locked.cancelled_by = user
        locked.save(update_fields=["status", "finished_at", "cancel_requested_at", "cancelled_by"])
        audit_record(actor=user, action="load_test.cancel", target=locked, details={"status": locked.status})
    return locked


def locustfile_for(test: LoadTest) -> str:
    """The locustfile test `test` runs (and that a person can run elsewhere)."""
    return locustfile_text(
        endpoint=test.endpoint.name,
        url=test.url,
        rows=test.rows,
        sends_key=test.endpoint.checks_keys,
        users=test.users,
        spawn_rate=test.spawn_rate,
        duration=test.duration_seconds,
    )


# -- in the worker -----------------------------------------------------------------------------------


def load_test_run(*, test_id: int) -> str:
    """Run the queued test (from the worker) and record how it ended; returns its status, or BUSY.

    Once claimed, every error ends the test as failed (a load test is not tried again later: its
    moment has passed); its key is revoked whatever happens.
    """
    now = timezone.now()
    claimed = LoadTest.objects.filter(pk=test_id, status=LoadTestStatus.QUEUED).update(
        status=LoadTestStatus.RUNNING, started_at=now, claimed_until=claims.claim_until()
    )
    if not claimed:
        return _settle_unclaimed(test_id)
    test = LoadTest.objects.select_related("endpoint").get(pk=test_id)
    try:
        with claims.renewed(
            lambda: LoadTest.objects.filter(pk=test_id, status=LoadTestStatus.RUNNING).update(
                claimed_until=claims.claim_until()
            ),
            what=str(test),
        ):
            status, summary, error = _run(test)
    except Exception as exc:
        log.exception("%s failed", test)
        status, summary, error = LoadTestStatus.FAILED, {}, f"The test could not run: {exc}"
    return _finish(test, status=status, summary=summary, error=error)


def load_test_fail(*, test_id: int, error: str) -> None:
    """Record a test as failed (the task's final failure) and revoke its key."""
    test = LoadTest.objects.select_related("endpoint").get(pk=test_id)
    _finish(test, status=LoadTestStatus.FAILED, summary={}, error=error)


def _settle_unclaimed(test_id: int) -> str:
    """The task found the test not queued: finished, run by a live worker, or left by a dead one."""
    test = LoadTest.objects.select_related("endpoint").get(pk=test_id)
    if test.status != LoadTestStatus.RUNNING:
        keys.load_test_key_revoke(test=test)  # a cancel of a queued test, say: nothing left working
        return test.status
    if test.claimed_until and test.claimed_until > timezone.now():
        return BUSY
    return _finish(
        test,
        status=LoadTestStatus.FAILED,
        summary=test.summary,
        error="The worker running this test stopped before it ended; its key is revoked.",
    )


def _finish(test: LoadTest, *, status: str, summary: dict, error: str) -> str:
    """Record how the test ended (once) and revoke its key (whoever gets here)."""
    with transaction.atomic():
        ended = LoadTest.objects.filter(
            Q(status=LoadTestStatus.RUNNING) | Q(status=LoadTestStatus.QUEUED), pk=test.pk
        ).update(
            status=status,
            summary=summary,
            error=error[:4000],
            finished_at=timezone.now(),
            claimed_until=None,
        )
        if ended:
            details = {
                "status": status,
                **{k: summary[k] for k in ("requests", "failures", "rps") if k in summary},
            }
            if error:
                details["error"] = error[:1000]
            audit_record(actor=None, action="load_test.finish", target=test, details=details)
        keys.load_test_key_revoke(test=test)
    test.refresh_from_db()
    return test.status


def _wait_for_key(test: LoadTest) -> None:
    """Put the test's key in force at the runtime before the first request (here, or by the worker
    that holds the endpoint's access claim)."""
    endpoint_id = test.endpoint_id
    wanted = Endpoint.objects.values_list("access_revision", flat=True).get(pk=endpoint_id)
    deadline = time.monotonic() + KEY_APPLY_SECONDS
    while True:
        access.access_apply(endpoint_id=endpoint_id)
        endpoint = Endpoint.objects.get(pk=endpoint_id)
        if endpoint.access_applied_revision >= wanted:
            return
        if endpoint.access_error:
            raise ServiceError(f"The test's key could not be put in force: {endpoint.access_error}")
        if time.monotonic() > deadline:
            raise ServiceError(f"The test's key was not in force after {KEY_APPLY_SECONDS} seconds.")
        time.sleep(1)


def _run(test: LoadTest) -> tuple[str, dict, str]:
    """Run the child process and store its snapshots; (status, summary, error)."""
    environment = {name: os.environ[name] for name in CHILD_ENVIRONMENT if name in os.environ}
    if test.endpoint.checks_keys:
        environment["API_KEY"] = keys.load_test_key_issue(test=test)
        _wait_for_key(test)
    with tempfile.TemporaryDirectory(prefix="load-test-") as folder:
        path = Path(folder) / locustfile_name(test.endpoint.name)
        path.write_text(locustfile_for(test))
        with open(Path(folder) / "stderr", "w+b") as stderr:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "worker.load_test",
                    str(path),
                    f"--users={test.users}",
                    f"--spawn-rate={test.spawn_rate}",
                    f"--duration={test.duration_seconds}",
                ],
                cwd=settings.BASE_DIR,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
            )
            try:
                final, cancelled, overran = _follow(test, process)
            finally:
                _end(process)
            stderr.seek(0)
            errors = stderr.read().decode(errors="replace")[-STDERR_KEPT:]
    if cancelled:
        return LoadTestStatus.CANCELLED, final or {}, ""
    if overran:
        limit = test.duration_seconds + settings.LOAD_TEST_GRACE_SECONDS
        return LoadTestStatus.FAILED, final or {}, f"The test ran past {limit} seconds and was stopped."
    if final is None:
        return (
            LoadTestStatus.FAILED,
            {},
            f"The test's process ended with {process.returncode}: {errors}".strip(),
        )
    return LoadTestStatus.DONE, final, ""


def _follow(test: LoadTest, process: subprocess.Popen) -> tuple[dict | None, bool, bool]:
    """Read the child's lines until it ends: store each snapshot, stop it on a cancel or past its
    time. Returns (final figures or None, cancelled, overran)."""
    assert process.stdout is not None
    deadline = time.monotonic() + test.duration_seconds + settings.LOAD_TEST_GRACE_SECONDS
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    points: list[dict] = []
    final, cancelled, pending = None, False, b""
    while True:
        if time.monotonic() > deadline:
            return final, cancelled, True
        if selector.select(timeout=1.0):
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                return final, cancelled, False
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                document = _parsed(line)
                if document is None:
                    continue
                if document.get("final"):
                    final = document
                else:
                    points.append(document)
            LoadTest.objects.filter(pk=test.pk).update(timeseries=points)
        if not cancelled and LoadTest.objects.filter(pk=test.pk, cancel_requested_at__isnull=False).exists():
            cancelled = True
            _signal(process, signal.SIGTERM)  # the child stops and prints its final figures


def _parsed(line: bytes) -> dict | None:
    try:
        document = json.loads(line)
    except ValueError:
        log.warning("a load test printed what is not JSON: %r", line[:200])
        return None
    return document if isinstance(document, dict) else None


def _signal(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _end(process: subprocess.Popen) -> None:
    """Make sure the child and anything it started are gone."""
    if process.poll() is None:
        _signal(process, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    _signal(process, signal.SIGKILL)
    process.wait()
    if process.stdout is not None:
        process.stdout.close()
