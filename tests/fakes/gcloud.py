"""The `gcloud` commands the doctor prints as fixes, applied to the fake project as Google would.

Only the commands the doctor prints are known; any other is an error, so a fix the doctor words
differently fails the test that applies it. A role grants the permissions the doctor checks it for
(worker/runtimes/gcp/doctor.py): the fake holds the caller's permissions, not Google's role book.
"""

from __future__ import annotations

import shlex

from worker.runtimes.gcp.doctor import ACT_AS, ACT_AS_ROLE, BUCKET_PERMISSIONS, BUCKET_ROLE, PROJECT_ROLES


def apply(fakes, command: str) -> None:
    """Carry out one fix on `fakes` (a tests.fakes.fixtures.Fakes)."""
    words = shlex.split(command)
    flags = dict(word.removeprefix("--").split("=", 1) for word in words if word.startswith("--"))
    args = [word for word in words if not word.startswith("--")]
    match args:
        case ["gcloud", "services", "enable", *services]:
            for service in services:
                fakes.project.disabled.discard(service)
        case ["gcloud", "storage", "buckets", "create", bucket]:
            fakes.storage.add_bucket(bucket.removeprefix("gs://"))
        case ["gcloud", "storage", "buckets", "add-iam-policy-binding", _bucket]:
            assert flags["role"] == BUCKET_ROLE, command
            fakes.storage.permissions.grant(*BUCKET_PERMISSIONS)
        case ["gcloud", "iam", "service-accounts", "create", account_id]:
            fakes.iam.add(f"{account_id}@{flags['project']}.iam.gserviceaccount.com")
        case ["gcloud", "iam", "service-accounts", "add-iam-policy-binding", _email]:
            assert flags["role"] == ACT_AS_ROLE, command
            fakes.iam.permissions.grant(ACT_AS)
        case ["gcloud", "projects", "add-iam-policy-binding", _project]:
            fakes.projects.permissions.grant(*PROJECT_ROLES[flags["role"]])
        case _:
            raise AssertionError(f"not a fix the fake project knows: {command}")
