"""What the fakes share as one Google Cloud project: which APIs are on, a clock, and how long
Google takes to let a new account or grant reach every service.

- An API named in `disabled` is refused by its fake, every call, as Google refuses a call to an
  API the project has not enabled (PERMISSION_DENIED / 403 with ErrorInfo reason SERVICE_DISABLED).
  A new project has only a few APIs on ("Enabled services": Cloud Storage, Service Management and
  Service Usage among them; Cloud Run, API Gateway, API Keys, Compute, IAM and Resource Manager
  are not): `fresh()` turns the others off.
- A service account is visible to Cloud Run `act_as_delay` seconds after IAM made it ("you might
  need to wait for 60 seconds or more before you use the service account", Create service
  accounts); before that Cloud Run refuses to run as it ("Permission 'iam.serviceaccounts.actAs'
  denied ... (or it may not exist)").
- A bucket grant takes `grant_delay` seconds to hold ("Policy changes typically take 2 minutes to
  propagate", IAM's access-change propagation page); a container that reads the bucket before
  that gets a 403.

Time is `clock()`, the wall clock unless a test gives the fakes its own (then nothing sleeps: the
test moves the clock as the worker's retry countdowns would pass).
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Google's APIs the fakes answer for, by the name Service Usage knows them by.
TITLES = {
    "run.googleapis.com": "Cloud Run Admin API",
    "apigateway.googleapis.com": "API Gateway API",
    "servicemanagement.googleapis.com": "Service Management API",
    "servicecontrol.googleapis.com": "Service Control API",
    "apikeys.googleapis.com": "API Keys API",
    "serviceusage.googleapis.com": "Service Usage API",
    "compute.googleapis.com": "Compute Engine API",
    "iam.googleapis.com": "Identity and Access Management (IAM) API",
    "storage.googleapis.com": "Cloud Storage API",
    "cloudresourcemanager.googleapis.com": "Cloud Resource Manager API",
    "logging.googleapis.com": "Cloud Logging API",
    "monitoring.googleapis.com": "Cloud Monitoring API",
}
#: On in a project made with the console or gcloud ("Enabled services", services enabled by default).
ENABLED_BY_DEFAULT = {
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "storage.googleapis.com",
    "servicemanagement.googleapis.com",
    "serviceusage.googleapis.com",
}
#: The waits Google's documents give: a new account "60 seconds or more"; a policy change
#: "typically 2 minutes".
NEW_ACCOUNT_SECONDS = 60.0
POLICY_CHANGE_SECONDS = 120.0


class FakeProject:
    def __init__(self) -> None:
        self.clock: Callable[[], float] = time.time
        self.reset()

    def reset(self) -> None:
        self.disabled: set[str] = set()
        self.act_as_delay = 0.0
        self.grant_delay = 0.0
        self.made: dict[str, float] = {}  # service account email -> when IAM made it
        self.granted: dict[tuple[str, str], float] = {}  # (bucket, member) -> when the grant was made

    def fresh(self) -> None:
        """A project just created: only the default APIs on, Google's usual propagation delays."""
        self.disabled = set(TITLES) - ENABLED_BY_DEFAULT
        self.act_as_delay = NEW_ACCOUNT_SECONDS
        self.grant_delay = POLICY_CHANGE_SECONDS

    def now(self) -> float:
        return self.clock()

    def is_disabled(self, api: str) -> bool:
        return api in self.disabled

    # --- service accounts --------------------------------------------------------------------

    def account_made(self, email: str) -> None:
        self.made[email] = self.now()

    def account_gone(self, email: str) -> None:
        self.made.pop(email, None)

    def seen_by_every_service(self, email: str) -> bool:
        """False while an account IAM made moments ago has not reached the other services."""
        made = self.made.get(email)
        return made is None or self.now() >= made + self.act_as_delay

    # --- bucket grants -----------------------------------------------------------------------

    def grants_changed(self, bucket: str, before: set[str], after: set[str]) -> None:
        for member in after - before:
            self.granted[(bucket, member)] = self.now()
        for member in before - after:
            self.granted.pop((bucket, member), None)

    def grant_holds_in(self, bucket: str, member: str) -> float:
        """Seconds until `member`'s grant on `bucket` holds: 0 once it does, or when the fakes
        never saw it made (granted by an administrator, before the test)."""
        granted = self.granted.get((bucket, member))
        if granted is None:
            return 0.0
        return max(0.0, granted + self.grant_delay - self.now())
