"""The portal's side of the sandbox: start the server when needed, hand it a job, read the answer.

    with client.workspace() as folder:
        (folder / "artifact.skops").write_bytes(data)
        result = client.run(folder, {"kind": "inspect", ...})

The server is shared by every web worker on the machine (one socket under SANDBOX_DIR, started
under a file lock) and started with an environment that holds no secret: no SECRET_KEY, database
URL, broker URL or cloud credentials reach it, whatever the portal's own environment holds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from serving.control import ControlError, send_command
from worker.runtimes.local import processes
from worker.runtimes.local.state import file_lock, fit_socket_path

log = logging.getLogger("endpoints.sandbox")

# Only these reach the server: enough to find Python, its packages and a locale.
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV")
START_SECONDS = 120.0


class SandboxError(Exception):
    """The job did not finish: a limit was hit, it crashed, or the sandbox could not run it."""

    def __init__(self, message: str, *, limit: str = ""):
        super().__init__(message)
        self.limit = limit


def root() -> Path:
    return Path(settings.SANDBOX_DIR)


def socket_path() -> Path:
    return fit_socket_path(root() / "sandbox.sock")


def limits() -> dict:
    return {
        "memory_bytes": settings.SANDBOX_MEMORY_BYTES,
        "cpu_seconds": settings.SANDBOX_CPU_SECONDS,
        "wall_seconds": settings.SANDBOX_WALL_SECONDS,
        "file_bytes": settings.SANDBOX_FILE_BYTES,
    }


def server_env() -> dict[str, str]:
    env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
    env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", HOME=os.fspath(root()))
    return env


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    """A private folder for one job, removed afterwards."""
    root().mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="job-", dir=root()))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def hidden_paths() -> list[str]:
    """The portal's data folders (other uploads among them) a job must not see; never the code or Python."""
    needed = [Path(settings.BASE_DIR).resolve(), Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]
    data = (settings.VAR_DIR, settings.MEDIA_ROOT, settings.LOCAL_RUNTIME_DIR, settings.SANDBOX_DIR)
    folders = {Path(p).resolve() for p in data}
    return sorted(
        os.fspath(folder)
        for folder in folders
        if folder.is_dir() and not any(keep == folder or folder in keep.parents for keep in needed)
    )


def run(folder: Path, job: dict) -> dict:
    """Run `job` on the files in `folder`; its result document, or SandboxError."""
    bounds = limits()
    job = {**job, "hide": hidden_paths()}
    command = {"cmd": "run", "dir": os.fspath(folder), "job": job, "limits": bounds}
    for _ in range(2):  # a stale server leaves; the second try gets a fresh one
        _ensure_server()
        try:
            answer = send_command(socket_path(), command, timeout=bounds["wall_seconds"] + 30)
        except ControlError as exc:
            raise SandboxError(f"The sandbox did not answer: {exc}.") from None
        if not answer.get("stale"):
            break
        stale = processes.read_pid_file(root() / "sandbox.pid")
        if stale is not None:
            processes.wait_gone(stale, 5.0)
    if not answer.get("ok"):
        tail = processes.log_tail(folder / "output.log", lines=4, max_chars=600)
        detail = f" Its last output: {tail}" if tail else ""
        raise SandboxError(f"{answer.get('error', 'it failed')}.{detail}", limit=answer.get("limit", ""))
    try:
        result = json.loads((folder / "result.json").read_text())
    except (OSError, ValueError) as exc:
        raise SandboxError(f"The sandbox gave no readable result ({exc}).") from None
    for part in ("network", "files"):
        if not str(result.get(part, "")).startswith(("isolated", "hidden")):
            log.warning("Sandboxed job: %s %s.", part, result.get(part))
    return result


def warm() -> None:
    """Start the server ahead of the first upload, without waiting for it (web start-up)."""
    if _answers():
        return
    with file_lock(root() / "sandbox.lock"):
        if processes.read_pid_file(root() / "sandbox.pid") is None:
            processes.write_pid_file(root() / "sandbox.pid", _start())


def _answers() -> bool:
    try:
        return bool(send_command(socket_path(), {"cmd": "ping"}, timeout=2).get("ok"))
    except ControlError:
        return False


def _ensure_server() -> None:
    """Make sure a sandbox server answers, starting one and waiting for it if need be."""
    if _answers():
        return
    pid_file = root() / "sandbox.pid"
    with file_lock(root() / "sandbox.lock"):
        pid = processes.read_pid_file(pid_file)
        if pid is None:
            pid = _start()
            processes.write_pid_file(pid_file, pid)
        deadline = time.monotonic() + START_SECONDS
        delay = 0.02
        while processes.alive(pid) and time.monotonic() < deadline:
            if _answers():
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)
        if processes.alive(pid):
            processes.terminate(pid, grace=1.0)
    tail = processes.log_tail(root() / "sandbox.log", lines=6)
    raise SandboxError(f"The sandbox could not be started. {tail}".strip())


def _start() -> int:
    root().mkdir(parents=True, exist_ok=True)
    with open(root() / "sandbox.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "endpoints.sandbox.server", os.fspath(socket_path())],
            cwd=settings.BASE_DIR,
            env=server_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    processes.adopt(process)
    return process.pid


def stop() -> None:
    """Stop the sandbox server, if one runs (tests, and `manage.py up` on exit)."""
    pid = processes.read_pid_file(root() / "sandbox.pid")
    if pid is not None:
        processes.terminate(pid, grace=2.0)
    for path in (root() / "sandbox.pid", socket_path()):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
