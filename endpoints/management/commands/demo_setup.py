"""Create the demo admin, a demo team member, and the iris model ready to deploy."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from endpoints.demo import IRIS_EXAMPLES, IRIS_LABELS, NamedBytes, iris_skops_bytes
from endpoints.models import Endpoint, MLModel, Team
from endpoints.services.endpoints import endpoint_create
from endpoints.services.versions import ml_model_create, model_version_register


class Command(BaseCommand):
    help = "Create the demo admin, a demo team member and the iris model (idempotent)."

    def handle(self, *args, **options):
        User = get_user_model()
        admin = User.objects.filter(username=settings.DEMO_ADMIN_USERNAME).first()
        if admin is None:
            password = settings.DEMO_ADMIN_PASSWORD or secrets.token_urlsafe(12)
            try:
                validate_password(password, User(username=settings.DEMO_ADMIN_USERNAME))
            except ValidationError as exc:
                raise CommandError(f"DEMO_ADMIN_PASSWORD is too weak: {' '.join(exc.messages)}") from None
            admin = User.objects.create_superuser(settings.DEMO_ADMIN_USERNAME, "", password)
            member_password = secrets.token_urlsafe(12)
            member = User.objects.create_user("alice", "", member_password)
            team, _ = Team.objects.get_or_create(name="Data science")
            team.members.add(member)
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo admin: {admin.username} / {password}\n"
                    f"Demo team member (team 'Data science'): alice / {member_password}"
                )
            )
        else:
            self.stdout.write(f"Demo admin {admin.username!r} exists (password unchanged).")
        if not MLModel.objects.filter(name="iris").exists():
            ml_model = ml_model_create(
                user=admin, name="iris", description="Iris species from flower measurements."
            )
            version = model_version_register(
                user=admin,
                ml_model=ml_model,
                upload=NamedBytes(iris_skops_bytes(), "iris.skops"),
                label_map=IRIS_LABELS,
                example=IRIS_EXAMPLES,
            )
            self.stdout.write(f"Registered {version} ({version.sha256[:12]}).")
        if not Endpoint.objects.filter(name="iris").exists():
            endpoint_create(user=admin, name="iris", description="Demo endpoint for the iris model.")
            self.stdout.write("Created endpoint 'iris': open it and click Deploy.")
