"""Stop what `manage.py up` started, and the data plane: every local serving process."""

import os
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from endpoints.management.commands.up import up_pid_file

STOP_WAIT_SECONDS = 30


class Command(BaseCommand):
    help = "Stop the portal started by `manage.py up` and every serving process of the local runtime."

    def handle(self, *args, **options):
        self.stop_portal()
        if settings.RUNTIME != "local":
            self.stdout.write(
                f"RUNTIME={settings.RUNTIME}: its endpoints keep serving; stop them from their pages "
                "(Operate, Stop) or with POST /api/v1/endpoints/<name>/stop/."
            )
            return
        from worker.runtimes.local.runtime import LocalRuntime

        stopped = LocalRuntime().stop_all()
        for endpoint, revisions in sorted(stopped.items()):
            self.stdout.write(f"Stopped {endpoint}: {', '.join(revisions)}")
        self.stdout.write(
            f"{sum(map(len, stopped.values()))} serving process(es) stopped. The records are unchanged: "
            "the next `scripts/up` starts what was live again."
        )

    def stop_portal(self) -> None:
        path = up_pid_file()
        try:
            pid = int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            self.stdout.write("The portal is not running (no `manage.py up` found).")
            return
        if not is_up(pid):
            self.stdout.write("The portal is not running (a stale pid file, removed).")
            path.unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while time.monotonic() < deadline:
            if not is_up(pid):  # gone (or a zombie its parent has yet to reap)
                self.stdout.write("Stopped the portal (web server, worker and beat).")
                return
            time.sleep(0.2)
        self.stderr.write(f"The portal (pid {pid}) did not stop within {STOP_WAIT_SECONDS} s.")


def is_up(pid: int) -> bool:
    """Whether `pid` is a running `manage.py up` (not another process that took a stale pid)."""
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return False
    return any(arg.endswith(b"manage.py") for arg in argv) and b"up" in argv
