"""Write an endpoint's Kubernetes objects as YAML, for teams who deploy through GitOps."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from endpoints.models import Endpoint
from endpoints.services.errors import ServiceError
from endpoints.services.exports import kubernetes_manifests


class Command(BaseCommand):
    help = (
        "Write the endpoint's Secret, Deployment, Service and HorizontalPodAutoscaler as YAML (the objects "
        "RUNTIME=kubernetes applies), for its live version, to standard output or --output."
    )

    def add_arguments(self, parser):
        parser.add_argument("endpoint", help="the endpoint's name")
        parser.add_argument("--output", "-o", help="a file to write instead of standard output")

    def handle(self, *args, endpoint: str, output: str | None = None, **options):
        found = Endpoint.objects.with_live().filter(name=endpoint, deleted_at=None).first()
        if found is None:
            raise CommandError(f"There is no endpoint named {endpoint!r}.")
        try:
            text = kubernetes_manifests(found)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        if output:
            Path(output).write_text(text)
            self.stderr.write(f"Wrote the manifests of {endpoint} to {output}.")
        else:
            self.stdout.write(text, ending="")
