"""Start the whole product on this machine: migrate, demo data, web server, worker and beat.

The portal's processes run until Ctrl-C (or `manage.py down`); the serving processes that deploys
start are the data plane and outlive them, so endpoints keep answering while the portal is down.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from endpoints.sandbox import client as sandbox
from portal import processes


class Command(BaseCommand):
    help = "Run the web server, a Celery worker and beat together until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("WEB_PORT", "8000")))
        parser.add_argument("--no-demo", action="store_true", help="Skip the demo admin and model.")

    def handle(self, *args, host, port, no_demo, **options):
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        if not no_demo:
            call_command("demo_setup")
        commands = {
            "web": processes.web(f"{host}:{port}"),
            "worker": processes.worker(),
            "beat": processes.beat(),
        }
        bin_dir = os.path.dirname(sys.executable)
        running = {}
        for name, argv in commands.items():
            argv[0] = os.path.join(bin_dir, argv[0])
            running[name] = subprocess.Popen(argv)
        pid_file = up_pid_file()
        pid_file.write_text(f"{os.getpid()}\n")
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"
        try:
            if self.wait_until_answering(url, running, lambda: stopping):
                self.stdout.write(
                    self.style.SUCCESS(f"Portal on http://{host}:{port}/")
                    + "\nCtrl-C (or `scripts/down`) stops the portal. Endpoints keep answering: their "
                    "serving processes outlive it; `scripts/down` stops them too."
                )
            while not stopping:
                for name, process in running.items():
                    if process.poll() is not None:
                        self.stderr.write(f"{name} exited with {process.returncode}; stopping.")
                        stopping = True
                time.sleep(0.5)
        finally:
            for process in running.values():
                if process.poll() is None:
                    process.terminate()
            for process in running.values():
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
            sandbox.stop()  # the upload sandbox's server, which the web server started
            pid_file.unlink(missing_ok=True)

    def wait_until_answering(self, url: str, running: dict, stopping) -> bool:
        """Wait until the web server answers `url` (its sign-in page); False if a process exits
        first or `stopping()` turns true."""
        login = url + "accounts/login/"
        while not stopping():
            if any(process.poll() is not None for process in running.values()):
                return False
            try:
                with urllib.request.urlopen(login, timeout=2) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        return False


def up_pid_file() -> Path:
    """Where a running `manage.py up` writes its pid, for `manage.py down`."""
    return settings.VAR_DIR / "up.pid"
