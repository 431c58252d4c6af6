"""Say what a deploy would change, changing nothing.

    manage.py deploy_plan iris-prod iris 3
    manage.py deploy_plan iris-prod iris 3 --traffic 10 --user ada

Prints one line per change (step, action, detail), as `POST /api/v1/endpoints/<name>/plan/` answers.
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from endpoints.models import Endpoint, ModelVersion
from endpoints.services.deployments import deployment_plan
from endpoints.services.errors import ServiceError


class Command(BaseCommand):
    help = "Show what deploying <model> v<version> to <endpoint> would change, without changing anything."

    def add_arguments(self, parser):
        parser.add_argument("endpoint", help="the endpoint's name")
        parser.add_argument("model", help="the model's name")
        parser.add_argument("version", type=int, help="the version number")
        parser.add_argument("--traffic", type=int, default=100, help="traffic percent (default 100)")
        parser.add_argument("--user", help="the admin to plan as (default: the first admin)")

    def handle(self, *args, endpoint, model, version, traffic, user, **options):
        users = get_user_model().objects.filter(is_active=True, is_staff=True).order_by("id")
        admin = users.filter(username=user).first() if user else users.first()
        if admin is None:
            raise CommandError(f"No admin named {user!r}." if user else "There is no admin to plan as.")
        target = Endpoint.objects.filter(name=endpoint).first()
        if target is None:
            raise CommandError(f"No endpoint named {endpoint!r}.")
        model_version = (
            ModelVersion.objects.select_related("model").filter(model__name=model, number=version).first()
        )
        if model_version is None:
            raise CommandError(f"No version {version} of model {model!r}.")
        try:
            changes = deployment_plan(
                user=admin, endpoint=target, model_version=model_version, traffic_percent=traffic
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Deploying {model_version} to {target.name} would:")
        width = max((len(change.step) for change in changes), default=0)
        for change in changes:
            self.stdout.write(f"  {change.step:<{width}}  {change.action:<6}  {change.detail}")
        if not changes:
            self.stdout.write("  change nothing")
