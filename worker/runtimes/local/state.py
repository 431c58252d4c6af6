"""The local runtime's files: where each endpoint's port, access file and revisions live.

    <LOCAL_RUNTIME_DIR>/
        artifacts/<sha256>.<format>          verified copies (or hard links) of model artifacts
        ports.lock                           held while a port is chosen
        launcher.sock | .pid | .log | .lock  the warm launcher serving processes are forked from
        endpoints/<endpoint>/
            port                             the endpoint's stable port, chosen once
            access.json                      its keys and allowlist; serving re-reads it on change
            current                          the revision that serves the stable URL
            lock                             held while revisions start, switch and stop
            <revision>.pid | .sock | .log    one serving process per revision

Every write that a reader may see half-done goes through a temporary file and a rename.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from worker.runtimes.base import deployment_number
from worker.runtimes.local.processes import read_pid_file

# sun_path holds 108 bytes; stay clear of it with some room for the serving side's own suffixes.
MAX_SOCKET_PATH = 100


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a reader sees the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`; the kernel drops it if this process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


class RuntimeDir:
    """The root of the local runtime's state."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def artifact(self, sha256: str, fmt: str) -> Path:
        return self.artifacts / f"{sha256}.{fmt}"

    def endpoint(self, name: str) -> EndpointDir:
        return EndpointDir(self.root, name)

    def endpoints(self) -> list[EndpointDir]:
        folder = self.root / "endpoints"
        if not folder.is_dir():
            return []
        return [EndpointDir(self.root, child.name) for child in sorted(folder.iterdir()) if child.is_dir()]

    def allocate_port(self, endpoint: str, *, host: str, low: int, high: int) -> int:
        """The endpoint's stable port: chosen once from [low, high] among free ones, then kept."""
        target = self.endpoint(endpoint)
        recorded = read_text(target.port_file)
        if recorded:
            return int(recorded)
        with file_lock(self.root / "ports.lock"):
            recorded = read_text(target.port_file)
            if recorded:
                return int(recorded)
            taken = set()
            for other in self.endpoints():
                recorded = read_text(other.port_file)
                if recorded and recorded.isdigit():
                    taken.add(int(recorded))
            for port in range(low, high + 1):
                if port not in taken and port_is_free(host, port):
                    write_atomically(target.port_file, f"{port}\n")
                    return port
        raise OSError(errno.EADDRINUSE, f"no free port left in {low}..{high} on {host}")


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class EndpointDir:
    """One endpoint's folder and the names of the files in it."""

    def __init__(self, root: Path, name: str):
        self.root = root
        self.name = name
        self.path = root / "endpoints" / name

    @property
    def port_file(self) -> Path:
        return self.path / "port"

    @property
    def access_file(self) -> Path:
        return self.path / "access.json"

    @property
    def current_file(self) -> Path:
        return self.path / "current"

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.path / "lock")

    def port(self) -> int | None:
        recorded = read_text(self.port_file)
        return int(recorded) if recorded else None

    def current(self) -> str | None:
        return read_text(self.current_file)

    def set_current(self, revision: str | None) -> None:
        if revision is None:
            with contextlib.suppress(FileNotFoundError):
                self.current_file.unlink()
        else:
            write_atomically(self.current_file, f"{revision}\n")

    @property
    def canary_file(self) -> Path:
        return self.path / "canary.json"

    def canary(self) -> dict | None:
        """The canary beside the current revision: {"revision": ..., "percent": ...}, or None."""
        text = read_text(self.canary_file)
        try:
            document = json.loads(text) if text else None
        except ValueError:
            return None
        return document if isinstance(document, dict) and document.get("revision") else None

    def set_canary(self, revision: str | None, percent: int = 0) -> None:
        if revision is None:
            with contextlib.suppress(FileNotFoundError):
                self.canary_file.unlink()
        else:
            write_atomically(self.canary_file, json.dumps({"revision": revision, "percent": percent}) + "\n")

    def write_access(self, document: dict) -> None:
        write_atomically(self.access_file, json.dumps(document, indent=2, sort_keys=True) + "\n")

    def pid_file(self, revision: str) -> Path:
        return self.path / f"{revision}.pid"

    def log_file(self, revision: str) -> Path:
        return self.path / f"{revision}.log"

    def socket_path(self, revision: str) -> Path:
        return fit_socket_path(self.path / f"{revision}.sock")

    def forward_socket_path(self, revision: str) -> Path:
        """Where the revision takes the requests a stable revision forwards to it as its canary."""
        return fit_socket_path(self.path / f"{revision}.fwd.sock")

    def newer_running(self, deployment_id: int) -> str | None:
        """The endpoint's current revision when a later deployment made it and it still runs:
        then an earlier deployment must never serve again (None otherwise)."""
        current = self.current()
        if current and deployment_number(current) > deployment_id and read_pid_file(self.pid_file(current)):
            return current
        return None

    def revisions(self) -> list[str]:
        """Every revision that has a pid file here, oldest deployment first."""
        names = [pid.name.removesuffix(".pid") for pid in self.path.glob("*.pid")]
        return sorted(names, key=deployment_number)

    def prune_logs(self, *, keep: int, live: tuple[str | None, ...] = ()) -> None:
        """Delete the logs of all but the `keep` newest revisions (never those in `live`)."""
        logs = sorted(self.path.glob("*.log"), key=lambda path: deployment_number(path.stem))
        for path in logs[:-keep] if keep else logs:
            if path.stem not in live:
                path.unlink(missing_ok=True)

    def forget(self, revision: str) -> None:
        """Remove a stopped revision's pid and socket files (its log stays, for reading)."""
        for path in (self.pid_file(revision), self.socket_path(revision), self.forward_socket_path(revision)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def fit_socket_path(path: Path) -> Path:
    """`path` when it fits a unix socket address, else a name derived from it in the temp dir."""
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"mep-{digest}.sock"
