"""IAM Admin: the endpoint's own service account, made when it is missing.

Each endpoint's Cloud Run revisions run as `GCP_SERVICE_ACCOUNT_TEMPLATE` (brought to an account
id of 6 to 30 characters by `GcpConfig.service_account_for`). A deploy reads the account and creates
it only when IAM answers NOT_FOUND, so a worker that may read but not create accounts keeps working
where an administrator made them beforehand. A create that meets ALREADY_EXISTS is the answer to an
earlier try (or a racing worker): success. PERMISSION_DENIED and an invalid id stay permanent with
IAM's own message. The portal journals the account, and a later deploy of the endpoint that finds
it recorded by the live deployment makes no call at all. It journals too whether it created the
account: an endpoint's delete removes only an account the portal made.
"""

from __future__ import annotations

import re

from google.api_core import exceptions as gexc

from worker.runtimes.base import PermanentError
from worker.runtimes.gcp.clients import Context
from worker.runtimes.gcp.config import SERVICE_ACCOUNT

DOMAIN = ".iam.gserviceaccount.com"
ACCOUNT_ID = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")


def split(account: str) -> tuple[str, str]:
    """`ep-iris@proj.iam.gserviceaccount.com` -> ("ep-iris", "proj"); refuse what IAM would refuse."""
    account_id, _, domain = account.partition("@")
    if not SERVICE_ACCOUNT.match(account) or not ACCOUNT_ID.match(account_id):
        raise PermanentError(
            f"The service account {account!r} (GCP_SERVICE_ACCOUNT_TEMPLATE) is not valid: an account id "
            "has 6 to 30 lowercase letters, digits and hyphens."
        )
    return account_id, domain.removesuffix(DOMAIN)


def exists(ctx: Context, account: str) -> bool:
    _, project = split(account)
    found = ctx.call(
        ctx.clients.iam_admin().get_service_account,
        request={"name": f"projects/{project}/serviceAccounts/{account}"},
        what=f"Read the service account {account}",
        accept=(gexc.NotFound,),
    )
    return found is not None


def ensure(ctx: Context, account: str, endpoint: str) -> bool:
    """Make `account` exist; True if this call created it."""
    if exists(ctx, account):
        return False
    account_id, project = split(account)
    ctx.call(
        ctx.clients.iam_admin().create_service_account,
        request={
            "name": f"projects/{project}",
            "account_id": account_id,
            "service_account": {
                "display_name": f"Model endpoint {endpoint}"[:100],
                "description": f"Runs the Cloud Run revisions of the portal endpoint {endpoint}."[:256],
            },
        },
        what=f"Create the service account {account}",
        accept=(gexc.AlreadyExists,),  # an earlier try (or another worker) made it
    )
    return True


def delete(ctx: Context, account: str) -> bool:
    """Delete `account` (IAM answers at once, no operation); True if it existed."""
    if not exists(ctx, account):
        return False
    _, project = split(account)
    ctx.call(
        ctx.clients.iam_admin().delete_service_account,
        request={"name": f"projects/{project}/serviceAccounts/{account}"},
        what=f"Delete the service account {account}",
        accept=(gexc.NotFound,),  # deleted since the read
    )
    return True
