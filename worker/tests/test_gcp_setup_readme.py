"""The README's "Deploy to your Google Cloud project" says what the doctor checks for."""

import re
from pathlib import Path

from worker.runtimes.gcp.doctor import ACT_AS_ROLE, BUCKET_ROLE, PROJECT_ROLES, REQUIRED_APIS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_grants_the_roles_the_doctor_checks_for_and_counts_its_checks():
    section = README.read_text().split("## Deploy to your Google Cloud project")[1].split("\n## ")[0]
    grants = section.split("The fixes enable")[1].split("Admins see")[0]

    assert re.findall(r"`(roles/[\w.]+)`", grants) == [BUCKET_ROLE, ACT_AS_ROLE, *PROJECT_ROLES]
    # credentials, APIs, bucket and account twice, roles, API Gateway's three limits, Armor's two
    checks = 1 + len(REQUIRED_APIS) + 4 + len(PROJECT_ROLES) + 3 + 2
    assert f"All {checks} checks passed." in section
