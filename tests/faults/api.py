"""The fault suite's users: an admin driving the REST API over HTTP, and end users calling endpoints.

    api = Api(stack.product.url).sign_in("sre", PASSWORD)
    version = api.upload_iris(model_id, c=0.5)
    deployment = api.deploy("iris", version["id"])
    api.wait_deployment(deployment)           # ready, or AssertionError with its journal

`Records` reads the private database directly, for what the API does not show (owed tasks) and
for polling a deployment's journal faster than a user could.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import psycopg

from endpoints.demo import IRIS_FEATURES, IRIS_LABELS
from tests.faults.stack import wait_for

SETOSA = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))
#: The local runtime's steps of each operation, in order.
DEPLOY_STEPS = ["artifact", "access", "start", "ready", "switch", "stop_previous"]
STOP_STEPS = ["stop"]
DELETE_STEPS = ["stop", "files", "artifacts"]
FINISHED = ("ready", "done", "failed")


def iris_skops(c: float) -> bytes:
    """Iris fitted with regularisation `c`: each `c` gives another artifact (and sha256)."""
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    frame = load_iris(as_frame=True).frame
    features = frame.iloc[:, :4]
    features.columns = IRIS_FEATURES
    return sio.dumps(LogisticRegression(max_iter=1000, C=c).fit(features, frame["target"]))


class ApiError(AssertionError):
    pass


class Api:
    """The REST API as an admin uses it: token auth, JSON in and out, statuses checked."""

    def __init__(self, url: str, timeout: float = 60):
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def sign_in(self, username: str, password: str) -> Api:
        body = self.call(
            "POST", "/api/v1/auth/token/", 200, json={"username": username, "password": password}
        )
        self.http.headers["Authorization"] = f"Token {body['token']}"
        return self

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def call(self, method: str, path: str, expect: int | tuple[int, ...], **kwargs):
        """The answer's JSON; ApiError naming the call when the status is not `expect`."""
        expected = (expect,) if isinstance(expect, int) else expect
        response = self.request(method, path, **kwargs)
        if response.status_code not in expected:
            raise ApiError(
                f"{method} {path} answered {response.status_code}, not {expect}: {response.text[:2000]}"
            )
        return response.json() if response.content else None

    # models and endpoints ------------------------------------------------------------------------
    def create_model(self, name: str) -> dict:
        return self.call("POST", "/api/v1/models/", 201, json={"name": name})

    def upload_iris(self, model_id: int, *, c: float) -> dict:
        return self.call(
            "POST",
            f"/api/v1/models/{model_id}/versions/",
            201,
            files={"artifact": ("iris.skops", iris_skops(c), "application/octet-stream")},
            data={"label_map": json.dumps(IRIS_LABELS)},
        )

    def create_endpoint(self, name: str, *, access_mode: str = "open") -> dict:
        return self.call("POST", "/api/v1/endpoints/", 201, json={"name": name, "access_mode": access_mode})

    def endpoint(self, name: str) -> dict:
        return self.call("GET", f"/api/v1/endpoints/{name}/", 200)

    def set_access_mode(self, name: str, mode: str) -> dict:
        return self.call("PATCH", f"/api/v1/endpoints/{name}/", 200, json={"access_mode": mode})

    def allow(self, name: str, cidr: str) -> dict:
        return self.call("POST", f"/api/v1/endpoints/{name}/allowlist/", 201, json={"cidr": cidr})

    # deployments -------------------------------------------------------------------------------
    def deploy(self, endpoint: str, version_id: int) -> int:
        body = self.call(
            "POST", f"/api/v1/endpoints/{endpoint}/deploy/", 202, json={"model_version": version_id}
        )
        return body["id"]

    def deployment(self, deployment_id: int) -> dict:
        return self.call("GET", f"/api/v1/deployments/{deployment_id}/", 200)

    def wait_deployment(
        self, deployment_id: int, *, timeout: float = 60, details: Callable[[], str] = str
    ) -> dict:
        """Poll until the deployment is ready; AssertionError (journal, logs) if it fails or hangs."""
        found = wait_for(
            lambda: (body := self.deployment(deployment_id))["status"] in FINISHED and body,
            timeout,
            f"deployment {deployment_id} finished",
            lambda: f"{json.dumps(self.deployment(deployment_id), indent=1)}\n{details()}",
        )
        assert found["status"] != "failed", f"operation {deployment_id} failed: {found['error']}\n{details()}"
        return found

    def deploy_and_wait(self, endpoint: str, version_id: int, **kwargs) -> dict:
        return self.wait_deployment(self.deploy(endpoint, version_id), **kwargs)

    def stop(self, endpoint: str) -> int:
        return self.call("POST", f"/api/v1/endpoints/{endpoint}/stop/", 202)["id"]

    def start(self, endpoint: str) -> int:
        return self.call("POST", f"/api/v1/endpoints/{endpoint}/start/", 202)["id"]

    def delete(self, endpoint: str) -> int:
        return self.call("DELETE", f"/api/v1/endpoints/{endpoint}/", 202, params={"confirm": endpoint})["id"]

    # keys --------------------------------------------------------------------------------------
    def request_key(self, endpoint: str, team: int) -> int:
        body = self.call(
            "POST",
            "/api/v1/key-requests/",
            201,
            json={"endpoint": endpoint, "team": team, "reason": "Calls from the fault suite's clients"},
        )
        return body["id"]

    def approve(self, request_id: int) -> dict:
        return self.call("POST", f"/api/v1/key-requests/{request_id}/approve/", 200, json={})

    def key_request(self, request_id: int) -> dict:
        return self.call("GET", f"/api/v1/key-requests/{request_id}/", 200)

    def wait_issued(self, request_id: int, *, timeout: float = 60, details: Callable[[], str] = str) -> dict:
        return wait_for(
            lambda: (body := self.key_request(request_id))["status"] == "issued" and body,
            timeout,
            f"key request {request_id} issued",
            lambda: f"{self.key_request(request_id)}\n{details()}",
        )

    def reveal(self, request_id: int) -> str:
        return self.call("POST", f"/api/v1/key-requests/{request_id}/reveal/", 200)["key"]

    def revoke(self, key_id: int) -> dict:
        return self.call("POST", f"/api/v1/keys/{key_id}/revoke/", 200)

    def team_id(self) -> int:
        return self.call("GET", "/api/v1/teams/", 200)["results"][0]["id"]


def predict(url: str, key: str | None = None, timeout: float = 5) -> httpx.Response:
    headers = {"x-api-key": key} if key else {}
    return httpx.post(f"{url}/predict", json=SETOSA, headers=headers, timeout=timeout)


def status_of(url: str, key: str | None = None) -> int | str:
    """The status code of a prediction, or the connection error's name."""
    try:
        return predict(url, key, timeout=3).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def served_version(url: str, key: str | None = None) -> int | None:
    """The model version number the endpoint answers with (None when it does not answer)."""
    headers = {"x-api-key": key} if key else {}
    try:
        response = httpx.get(f"{url}/v1/model", headers=headers, timeout=3)
    except httpx.HTTPError:
        return None
    return response.json().get("version") if response.status_code == 200 else None


class Records:
    """Read-only looks at the private database, on one connection made again after a restart."""

    def __init__(self, url: str):
        self.url = url
        self.connection: psycopg.Connection | None = None

    def rows(self, sql: str, *args) -> list[tuple]:
        for attempt in (1, 2):
            try:
                if self.connection is None or self.connection.closed:
                    self.connection = psycopg.connect(self.url, connect_timeout=3, autocommit=True)
                return self.connection.execute(sql, args).fetchall()
            except psycopg.OperationalError:
                self.close()
                if attempt == 2:
                    raise
        return []

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def journal(self, deployment_id: int) -> list[tuple[str, str]]:
        """The deployment's journal as (step, state) pairs."""
        rows = self.rows("SELECT steps FROM endpoints_deployment WHERE id = %s", deployment_id)
        return [(entry["step"], entry["state"]) for entry in (rows[0][0] if rows else [])]

    def owed(self) -> list[str]:
        rows = self.rows("SELECT task, object_id, sends FROM endpoints_owedtask ORDER BY id")
        return [f"{task}({object_id}) sent {sends}x" for task, object_id, sends in rows]


def reached(journal: list[tuple[str, str]], step: str, state: str, steps: list[str] = DEPLOY_STEPS) -> bool:
    """Whether an operation of `steps` whose journal is `journal` got to `step` in `state`, or past it."""
    later = steps[steps.index(step) + 1 :]
    return (
        (step, state) in journal
        or (state == "running" and (step, "done") in journal)
        or any(name in later for name, _ in journal)
    )


def wait_journal(
    records: Records,
    deployment_id: int,
    step: str,
    state: str = "done",
    timeout: float = 30,
    steps: list[str] = DEPLOY_STEPS,
):
    """Poll the journal until the operation got to `step` in `state` (or past it: a step can take a
    millisecond); every 2 ms, as the last steps take tens of milliseconds."""
    deadline = time.monotonic() + timeout
    while not reached(records.journal(deployment_id), step, state, steps):
        assert time.monotonic() < deadline, f"deployment {deployment_id} not at {step} {state} in {timeout}s"
        time.sleep(0.002)


@contextmanager
def dashboard_session(url: str, username: str, password: str) -> Iterator[httpx.Client]:
    """A browser-like client signed in to the dashboard through its login form."""
    with httpx.Client(base_url=url, timeout=30) as client:
        page = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, f"no CSRF token in the login page ({page.status_code})"
        signed_in = client.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)},
            headers={"Referer": f"{url}/accounts/login/"},
        )
        assert signed_in.status_code == 302, f"dashboard sign-in answered {signed_in.status_code}"
        yield client
