"""Serving processes on this machine: start one, ask it things, stop it.

A serving process (`python -m serving`) answers newline-delimited JSON on its control socket
(`serving.control`): `{"cmd": "status"}` -> `{"pid", "ready", "serving", "port"}` and
`{"cmd": "serve"}` -> starts accepting on the listener it shares with the revision it replaces. It
runs in its own session so it outlives the worker that started it, and a signal to its process
group reaches all of it.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from serving import pidfile
from serving.pidfile import start_time

# The serving process gets these from the worker's environment and nothing else: it never needs
# the portal's database URL or secret key.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")

# Popen objects of the processes this worker process started, so they are reaped when they exit.
_children: dict[int, subprocess.Popen] = {}


def serving_env(env: dict[str, str]) -> dict[str, str]:
    """The whole environment of a serving process: a few basics, SERVING_* overrides, then `env`."""
    full_env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
    full_env.update({key: value for key, value in os.environ.items() if key.startswith("SERVING_")})
    full_env.update(env)
    full_env["PYTHONUNBUFFERED"] = "1"
    return full_env


def spawn(*, env: dict[str, str], cwd: Path, log_path: Path) -> int:
    """Start `python -m serving` in its own session with output to `log_path`; return its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    adopt(process)
    return process.pid


def adopt(process: subprocess.Popen) -> None:
    """Keep `process` so that it is reaped (not left a zombie) once it exits."""
    _children[process.pid] = process


def reap_adopted(timeout: float = 5.0) -> None:
    """Wait for the adopted processes that were told to stop, so none is left a zombie."""
    deadline = time.monotonic() + timeout
    for pid, process in list(_children.items()):
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
        if process.returncode is not None:
            _children.pop(pid, None)


def listening_pids(port: int) -> list[int]:
    """The processes holding a TCP socket that listens on `port` (on any address), from /proc."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    sockets.add(f"socket:[{fields[9]}]")
    holders = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in sockets for fd in (proc / "fd").iterdir()):
                holders.append(int(proc.name))
    return holders


def logs_under(pid: int, folder: Path) -> bool:
    """Whether `pid` writes its output to a file under `folder`: how the local runtime starts
    every serving process (its revision log), so a process found this way is one of ours."""
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            if Path(folder) in Path(os.readlink(f"/proc/{pid}/fd/{fd}")).parents:
                return True
    return False


def write_pid_file(path: Path, pid: int) -> None:
    pidfile.write(path, pid)


def read_pid_file(path: Path) -> int | None:
    """The pid recorded in `path` if that process is still the one we started, else None."""
    try:
        pid_text, _, started = path.read_text().strip().partition(" ")
        pid = int(pid_text)
    except (FileNotFoundError, ValueError):
        return None
    if not alive(pid):
        return None
    current = start_time(pid)
    if current is not None and started not in ("", "-") and current != started:
        return None  # the pid was reused by some other process
    return pid


def alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.exists():
        return start_time(pid) is not None  # None: a zombie, as good as gone
    return True


def terminate(pid: int, *, grace: float = 10.0) -> bool:
    """SIGTERM the process group, wait up to `grace` seconds, then SIGKILL. True if it had to kill."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    delay = 0.02
    while alive(pid):
        if time.monotonic() >= deadline:
            _signal_group(pid, signal.SIGKILL)
            wait_gone(pid, 5.0)
            return True
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)
    return False


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def http_get(host: str, port: int, path: str, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """One plain GET on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def log_tail(path: Path, *, lines: int = 12, max_chars: int = 2000) -> str:
    """The last lines of a log file, for an error message an admin can act on."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - 16384))
            text = file.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    tail = "\n".join(line for line in text.splitlines()[-lines:] if line.strip())
    return tail[-max_chars:]
