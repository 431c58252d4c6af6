"""Start the whole product on this machine: migrate, demo data, web server, worker and beat."""

import os
import signal
import subprocess
import sys
import time

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
        self.stdout.write(self.style.SUCCESS(f"Portal on http://{host}:{port}/  (Ctrl-C stops everything)"))
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
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
