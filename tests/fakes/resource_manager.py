"""A fake Cloud Resource Manager API v3 over REST: `projects.testIamPermissions` only.

`POST /v3/projects/{project}:testIamPermissions` with `{"permissions": [...]}` answers
`{"permissions": [...]}`, the asked permissions the caller holds (`self.permissions`), and `{}`
when it holds none (proto3 JSON leaves an empty list out). Permissions with wildcards are refused
with 400, as Google does.
"""

from __future__ import annotations

from tests.fakes.permissions import Permissions
from tests.fakes.rest_server import HttpError, Request, RestFake, route


class ResourceManagerFake(RestFake):
    api = "cloudresourcemanager.googleapis.com"

    def __init__(self):
        self.permissions = Permissions()
        super().__init__()

    def reset_state(self) -> None:
        self.permissions.reset()

    @route("POST", r"/v3/projects/(?P<project>[^/:]+):testIamPermissions")
    def test_iam_permissions(self, request: Request):
        asked = request.json().get("permissions", [])
        if any("*" in permission for permission in asked):
            raise HttpError(400, "Permissions with wildcards are not allowed.")
        held = self.permissions.held(asked)
        return 200, {"permissions": held} if held else {}
