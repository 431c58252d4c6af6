"""Processes on this machine as the fault suite sees them: ports, process groups, serving processes.

Serving processes are found the way an operator would find them, from the kernel's tables rather
than the runtime's pid files: a process counts as one of an endpoint's serving processes when it
runs serving code and holds the endpoint's listening socket or a control socket bound under the
endpoint's folder. Processes of one serving process (its master and workers) share a session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

LISTEN = "0A"  # TCP state in /proc/net/tcp


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_block(size: int = 100, low: int = 14000, high: int = 17999) -> tuple[int, int]:
    """A block of `size` free ports below the ephemeral range, for the endpoints of one run (each
    endpoint keeps the port it was given).

    Runs side by side start at different blocks (by pid), so they rarely pick the same one.
    """
    blocks = (high - low + 1) // size
    first = os.getpid() % blocks
    for index in range(blocks):
        start = low + ((first + index) % blocks) * size
        if all(port_is_free(port) for port in range(start, start + size)):
            return start, start + size - 1
    raise RuntimeError(f"no block of {size} free ports in {low}..{high}")


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def signal_group(pid: int, sig: int) -> None:
    """`sig` to the process group led by `pid` (to `pid` alone if it leads none)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_gone(pids, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file ("" when there is none)."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - 200 * lines))
            text = file.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return b""


def _session(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def _unix_sockets_under(folder: Path) -> dict[int, str]:
    """Inode -> path of every bound unix socket whose path lies in `folder`."""
    prefix = f"{folder}/"
    found = {}
    for line in _read("/proc/net/unix").decode(errors="replace").splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[7].startswith(prefix):
            found[int(parts[6])] = parts[7]
    return found


def _listeners_on(port: int) -> set[int]:
    """Inodes of the TCP sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in _read(table).decode().splitlines()[1:]:
            parts = line.split()
            if len(parts) > 9 and parts[3] == LISTEN and int(parts[1].rsplit(":", 1)[1], 16) == port:
                found.add(int(parts[9]))
    return found


def _runs_serving(pid: int) -> bool:
    """Serving code: forked from the launcher (named `serving`) or started as `python -m serving`."""
    if _read(f"/proc/{pid}/comm").strip() == b"serving":
        return True
    return b"\0-m\0serving\0" in _read(f"/proc/{pid}/cmdline")


@dataclass
class ServingProcess:
    """One serving process of an endpoint: its session (the master's pid) and what it holds."""

    session: int
    pids: list[int] = field(default_factory=list)
    revisions: set[str] = field(default_factory=set)
    listens: bool = False


def serving_processes(endpoint_dir: Path, port: int | None) -> list[ServingProcess]:
    """The serving processes of the endpoint kept in `endpoint_dir` (listening on `port`)."""
    controls = _unix_sockets_under(endpoint_dir)
    listeners = _listeners_on(port) if port else set()
    found: dict[int, ServingProcess] = {}
    for pid in _pids():
        if not _runs_serving(pid):
            continue
        inodes = _socket_inodes(pid)
        held = [controls[inode] for inode in inodes if inode in controls]
        listens = bool(inodes & listeners)
        if not held and not listens:
            continue
        session = _session(pid)
        if session is None:
            continue
        process = found.setdefault(session, ServingProcess(session=session))
        process.pids.append(pid)
        # A revision's control socket, and its forward socket (`<revision>.fwd.sock`, where it takes
        # the requests a live revision forwards to it as a canary), both name it.
        process.revisions.update(Path(path).name.removesuffix(".sock").removesuffix(".fwd") for path in held)
        process.listens = process.listens or listens
    return sorted(found.values(), key=lambda process: process.session)


def mentioning(text: str) -> list[int]:
    """Processes whose command line or environment contains `text` (never this one)."""
    needle = text.encode()
    me = os.getpid()
    return [
        pid
        for pid in _pids()
        if pid != me and (needle in _read(f"/proc/{pid}/cmdline") or needle in _read(f"/proc/{pid}/environ"))
    ]


def sweep(text: str, *, grace: float = 5.0) -> list[int]:
    """Stop every process that mentions `text` (SIGTERM, then SIGKILL); returns their pids."""
    pids = mentioning(text)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if not wait_gone(pids, grace):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_gone(pids, 5.0)
    return pids
