"""Read example rows for the model versions registered before they were kept.

    python manage.py version_examples            # every version without examples
    python manage.py version_examples --id 7 --again

Each artifact is opened in the upload sandbox (never in this process), as an upload is.
"""

from django.core.management.base import BaseCommand

from endpoints.models import ModelVersion
from endpoints.services.errors import ServiceError
from endpoints.services.versions import model_version_examples_read


class Command(BaseCommand):
    help = "Read example rows from the artifacts of versions that have none (in the sandbox)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--id", type=int, action="append", dest="ids", help="only this version id (repeatable)"
        )
        parser.add_argument("--again", action="store_true", help="read them even where some are kept")

    def handle(self, *args, ids=None, again=False, **options):
        versions = ModelVersion.objects.select_related("model").order_by("pk")
        if ids:
            versions = versions.filter(pk__in=ids)
        if not again:
            versions = versions.filter(examples={})
        failed = 0
        for each in versions:
            try:
                examples = model_version_examples_read(version=each)
            except ServiceError as exc:
                failed += 1
                self.stderr.write(f"{each}: {exc.message}")
            else:
                self.stdout.write(f"{each}: {examples['note']}.")
        if failed:
            self.stderr.write(f"{failed} version(s) could not be read.")
