"""Check, changing nothing, that the Google Cloud project is ready for the gcp runtime.

    manage.py gcp_doctor
    manage.py gcp_doctor --member serviceAccount:portal-worker@my-project.iam.gserviceaccount.com

Prints one PASS or FAIL line per check, and under each failure the gcloud command that fixes it;
exits non-zero when any check fails.
"""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from worker.runtimes.gcp.clients import Context
from worker.runtimes.gcp.config import GcpConfig
from worker.runtimes.gcp.doctor import PRINCIPAL, run_checks


class Command(BaseCommand):
    help = "Check that the configured Google Cloud project is ready for the gcp runtime (read-only)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--member",
            default="",
            help=f"the worker's principal in the fix commands, e.g. serviceAccount:NAME@PROJECT."
            f"iam.gserviceaccount.com (default: the credentials' service account, or {PRINCIPAL})",
        )

    def handle(self, *args, member, **options):
        try:
            cfg = GcpConfig.from_settings()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        checks = run_checks(Context(cfg), member=member)
        self.stdout.write(f"Google Cloud project {cfg.project}:")
        for check in checks:
            self.stdout.write(f"  {'PASS' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
            if check.fix:
                self.stdout.write(f"        fix: {check.fix}")
        failed = sum(not check.ok for check in checks)
        if failed:
            raise CommandError(f"{failed} of {len(checks)} checks failed.")
        self.stdout.write(f"All {len(checks)} checks passed.")
