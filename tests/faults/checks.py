"""What every scenario checks at its end: one serving process per endpoint, the live revision's."""

from __future__ import annotations

import time

from tests.faults.api import Api, served_version
from tests.faults.processes import ServingProcess, serving_processes, tail
from tests.faults.stack import Stack
from worker.runtimes.local.state import MAX_SOCKET_PATH


def endpoint_dir(stack: Stack, name: str):
    return stack.product.runtime_dir / "endpoints" / name


def endpoint_port(stack: Stack, name: str) -> int | None:
    try:
        return int((endpoint_dir(stack, name) / "port").read_text())
    except (OSError, ValueError):
        return None


def serving(stack: Stack, name: str) -> list[ServingProcess]:
    folder = endpoint_dir(stack, name)
    # Control sockets are found by their path; a path too long for a socket is moved elsewhere.
    assert len(str(folder / f"{name}-d99999.sock")) <= MAX_SOCKET_PATH, f"endpoint name {name!r} is too long"
    return serving_processes(folder, endpoint_port(stack, name))


def describe(stack: Stack, name: str) -> str:
    """The endpoint's serving processes and folder, for a failure message."""
    folder = endpoint_dir(stack, name)
    files = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
    current = (folder / "current").read_text().strip() if (folder / "current").exists() else None
    pid_files = {path.name: path.read_text().strip() for path in sorted(folder.glob("*.pid"))}
    logs = "\n".join(f"--- {path.name} ---\n{tail(path, 10)}" for path in sorted(folder.glob("*.log"))[-3:])
    return (
        f"serving processes: {serving(stack, name)}\ncurrent: {current}\npid files: {pid_files}\n"
        f"files: {files}\n{logs}"
    )


def assert_only_live_serving(
    stack: Stack, api: Api, name: str, *, version: int, key: str | None = None
) -> None:
    """Exactly one serving process for the endpoint: the live deployment's revision, holding the
    endpoint's listener, answering with `version`."""
    endpoint = api.endpoint(name)
    live = api.deployment(endpoint["live_deployment"]["id"])
    revision = live["resources"]["revision"]
    found = serving(stack, name)
    context = f"endpoint {name}, live revision {revision}\n{describe(stack, name)}"
    assert len(found) == 1, f"{len(found)} serving processes, not 1: {context}"
    assert found[0].revisions == {revision}, f"the serving process is not the live revision's: {context}"
    assert found[0].listens, f"the serving process does not hold the endpoint's listener: {context}"
    answered = {served_version(endpoint["service_url"], key) for _ in range(5)}
    assert answered == {version}, f"answered with versions {answered}, not {version}: {context}"


def assert_stays_so(
    stack: Stack, api: Api, name: str, *, version: int, seconds: float, key: str | None = None
) -> None:
    """The same holds for `seconds` (reconcile runs meanwhile): nothing replaced comes back."""
    deadline = time.monotonic() + seconds
    while True:
        assert_only_live_serving(stack, api, name, version=version, key=key)
        if time.monotonic() >= deadline:
            return
        time.sleep(0.5)
