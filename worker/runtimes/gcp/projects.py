"""Cloud Resource Manager v3 over REST, for the one call the runtime makes: projects.testIamPermissions.

Its Python client is not a dependency; this goes through google-cloud-core's JSON connection, as
the Cloud Storage client does, so credentials, the endpoint override and Google's errors
(`google.api_core.exceptions`, which `Context.call` translates) work as for every other client.
"""

from __future__ import annotations

from google.cloud import _http
from google.cloud.client import Client

ENDPOINT = "https://cloudresourcemanager.googleapis.com"


class _Connection(_http.JSONConnection):
    API_VERSION = "v3"
    API_URL_TEMPLATE = "{api_base_url}/{api_version}{path}"


class ProjectsClient(Client):
    SCOPE = ("https://www.googleapis.com/auth/cloud-platform",)

    def __init__(self, credentials=None, client_options=None):
        super().__init__(credentials=credentials, client_options=client_options)
        connection = _Connection(self)
        connection.API_BASE_URL = (client_options or {}).get("api_endpoint") or ENDPOINT
        self._connection = connection

    def test_iam_permissions(
        self, resource: str, permissions: list[str], *, timeout: float, retry: None = None
    ) -> list[str]:
        """The permissions of `permissions` the caller holds on `resource` ("projects/{id}").

        `retry` is there for `Context.call`, which retries itself: this client never does.
        """
        answer = self._connection.api_request(
            method="POST",
            path=f"/{resource}:testIamPermissions",
            data={"permissions": permissions},
            timeout=timeout,
        )
        return list(answer.get("permissions", []))
