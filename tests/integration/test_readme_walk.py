"""The README's command-line walk through the REST API, run as written: bash, curl and jq against a
live portal with a real Celery worker and the local runtime."""

import json
import re
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from endpoints.models import ApiKeyRequest, Deployment, DeploymentStatus, Team

pytestmark = pytest.mark.integration

BASE = Path(__file__).resolve().parents[2]
MARKER = "<!-- walk-the-api:"


def the_walk() -> str:
    """The bash block the README marks as the walk."""
    readme = (BASE / "README.md").read_text()
    after = readme.split(MARKER, 1)[1]
    return re.search(r"```bash\n(.*?)```", after, re.S).group(1)


@pytest.fixture(autouse=True)
def _static_root(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path  # WhiteNoise warns (an error here) when it does not exist yet


def test_the_readme_walk_registers_deploys_gets_a_key_and_calls_the_endpoint(
    live_server, celery_worker_process, tmp_path
):
    User = get_user_model()
    User.objects.create_superuser("admin", "", "admin-password-1")
    alice = User.objects.create_user("alice", "", "alice-password-1")
    Team.objects.create(name="Data science").members.add(alice)
    (tmp_path / ".venv").symlink_to(BASE / ".venv")  # the walk runs .venv/bin/python from the checkout

    run = subprocess.run(
        ["bash", "-c", the_walk()],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "PORTAL": live_server.url,
            "ADMIN_PASSWORD": "admin-password-1",
            "MEMBER_PASSWORD": "alice-password-1",
        },
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert run.returncode == 0, (run.stdout, run.stderr, celery_worker_process.log_text())
    answers = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(answers) == 5
    assert answers[0]["target"] == "setosa" and answers[0]["setosa_probability"] > 0.9
    assert answers[1] == {"target": "virginica"}
    assert answers[2] == {"predictions": ["setosa", "virginica"]}
    assert [max(row, key=row.get) for row in answers[3]["predictions"]] == ["setosa", "virginica"]
    assert answers[4]["predictions"] == ["setosa", "virginica"] and len(answers[4]["probabilities"]) == 2
    assert Deployment.objects.get(endpoint__name="flowers").status == DeploymentStatus.READY
    request = ApiKeyRequest.objects.get(endpoint__name="flowers")
    assert (request.team.name, request.requested_by, request.status) == ("Data science", alice, "issued")
