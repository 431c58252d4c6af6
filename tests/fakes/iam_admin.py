"""A fake IAM Admin API v1 (`google.iam.admin.v1.IAM`) over gRPC: service accounts only.

It holds to Google's definitions (google/iam/admin/v1/iam.proto): an account is
`projects/{project}/serviceAccounts/{email}` with email `{account_id}@{project}.iam.gserviceaccount.com`;
`CreateServiceAccount(name="projects/{project}", account_id, service_account)` wants an account id
"6-30 characters long" matching `[a-z]([-a-z0-9]*[a-z0-9])` and refuses others with
INVALID_ARGUMENT; `display_name` is at most 100 characters and `description` at most 256; the same
id twice in a project is ALREADY_EXISTS ("Service account ... already exists within project ...").
`GetServiceAccount` takes the email or the unique id, with the project or `-`, and answers an
unknown account with NOT_FOUND ("Unknown service account"). `DeleteServiceAccount` answers an
empty response (projects.serviceAccounts.delete: "If successful, the response body is empty"), or
NOT_FOUND for an account that is not there. Create, get and delete are synchronous.

Accounts named at construction (`setup`, e.g. the gateway's, made by an administrator) exist after
every reset; `emails` leaves them out, so tests see only what the runtime made.
`TestIamPermissions(resource="projects/-/serviceAccounts/{email}")` answers the asked permissions
the caller holds (`self.permissions`), or NOT_FOUND for an unknown account. A made account is
told to the project (tests.fakes.project), which keeps Cloud Run from seeing it for a while.
"""

from __future__ import annotations

import hashlib
import re

import grpc
from google.cloud import iam_admin_v1
from google.iam.v1 import iam_policy_pb2
from google.protobuf import empty_pb2

from tests.fakes.grpc_server import FakeError, GrpcFake, already_exists, invalid, next_number, rpc
from tests.fakes.permissions import Permissions

SERVICE = "google.iam.admin.v1.IAM"
PROJECT = re.compile(r"^projects/([^/]+)$")
ACCOUNT = re.compile(r"^projects/([^/]+)/serviceAccounts/([^/]+)$")
ACCOUNT_ID = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")
DOMAIN = ".iam.gserviceaccount.com"


class IamAdminFake(GrpcFake):
    api = "iam.googleapis.com"

    def __init__(self, setup: tuple[str, ...] = ()):
        super().__init__()
        self.setup = setup
        self.permissions = Permissions()
        self.reset_state()

    def reset_state(self) -> None:
        self.permissions.reset()
        #: (project, email) -> account
        self.accounts: dict[tuple[str, str], iam_admin_v1.ServiceAccount] = {}
        for email in self.setup:
            self.add(email)

    # --- test helpers ------------------------------------------------------------------------

    def add(self, email: str, display_name: str = "") -> iam_admin_v1.ServiceAccount:
        """An account that exists already (made by an administrator)."""
        project = email.partition("@")[2].removesuffix(DOMAIN)
        with self.lock:
            return self._store(project, email, display_name, "")

    def remove(self, email: str) -> None:
        """The account does not exist (test setup)."""
        with self.lock:
            self.accounts = {key: account for key, account in self.accounts.items() if key[1] != email}

    def emails(self, project: str) -> list[str]:
        """The project's accounts, the setup accounts left out."""
        with self.lock:
            return sorted(email for (p, email) in self.accounts if p == project and email not in self.setup)

    # --- RPCs --------------------------------------------------------------------------------

    @rpc(
        SERVICE, "CreateServiceAccount", iam_admin_v1.CreateServiceAccountRequest, iam_admin_v1.ServiceAccount
    )
    def create_service_account(self, request, context):
        match = PROJECT.match(request.name)
        if not match:
            raise invalid(f"Invalid resource name {request.name!r}: expected projects/{{project}}.")
        project = match.group(1)
        account_id = request.account_id
        if not 6 <= len(account_id) <= 30:
            raise invalid(
                f"Invalid account id {account_id!r}: an account id must be between 6 and 30 characters."
            )
        if not ACCOUNT_ID.match(account_id):
            raise invalid(
                f"Invalid account id {account_id!r}: an account id must match the regular expression "
                "[a-z]([-a-z0-9]*[a-z0-9])."
            )
        given = request.service_account
        if len(given.display_name) > 100:
            raise invalid("display_name must be at most 100 characters.")
        if len(given.description) > 256:
            raise invalid("description must be at most 256 characters.")
        email = f"{account_id}@{project}{DOMAIN}"
        if (project, email) in self.accounts:
            raise already_exists(
                f"Service account {account_id} already exists within project projects/{project}."
            )
        account = self._store(project, email, given.display_name, given.description)
        self.project.account_made(email)
        return account

    @rpc(SERVICE, "GetServiceAccount", iam_admin_v1.GetServiceAccountRequest, iam_admin_v1.ServiceAccount)
    def get_service_account(self, request, context):
        match = ACCOUNT.match(request.name)
        if not match:
            raise invalid(
                f"Invalid resource name {request.name!r}: "
                "expected projects/{project}/serviceAccounts/{account}."
            )
        project, key = match.groups()
        for (owner, email), account in self.accounts.items():
            if project in ("-", owner) and key in (email, account.unique_id):
                return account
        raise FakeError(grpc.StatusCode.NOT_FOUND, "Unknown service account")

    @rpc(
        SERVICE,
        "TestIamPermissions",
        iam_policy_pb2.TestIamPermissionsRequest,
        iam_policy_pb2.TestIamPermissionsResponse,
    )
    def test_iam_permissions(self, request, context):
        self.get_service_account(iam_admin_v1.GetServiceAccountRequest(name=request.resource), context)
        return iam_policy_pb2.TestIamPermissionsResponse(
            permissions=self.permissions.held(request.permissions)
        )

    @rpc(SERVICE, "DeleteServiceAccount", iam_admin_v1.DeleteServiceAccountRequest, empty_pb2.Empty)
    def delete_service_account(self, request, context):
        account = self.get_service_account(request, context)
        del self.accounts[(account.project_id, account.email)]
        self.project.account_gone(account.email)
        return empty_pb2.Empty()

    def _store(self, project: str, email: str, display_name: str, description: str):
        unique_id = str(int(hashlib.sha1(email.encode()).hexdigest(), 16) % 10**21).rjust(21, "1")
        account = iam_admin_v1.ServiceAccount(
            name=f"projects/{project}/serviceAccounts/{email}",
            project_id=project,
            unique_id=unique_id,
            email=email,
            display_name=display_name,
            description=description,
            oauth2_client_id=unique_id,
            etag=f"BwY{next_number()}".encode(),
        )
        self.accounts[(project, email)] = account
        return account
