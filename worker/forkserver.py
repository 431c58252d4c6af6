"""A warm fork server: import something heavy once, then fork a child per request.

The local runtime's launcher (serving processes) and the upload sandbox (one confined process per
upload) are both this loop with a different warm-up and child. Protocol (`serving/control.py`), one
JSON line each way on a unix socket only its owner may use:

    {"cmd": "ping"} -> {"ok": true, "pid": N, "stamp": S}
    {"cmd": <the server's command>, ...} -> the child's business; with `reply_pid`, the server
        answers {"ok": true, "pid": N} itself; when the code it imported changed, it answers
        {"ok": false, "stale": true, "error": "stale: ..."} and leaves, for a fresh one to start.

The server leaves when its socket is gone (another took its place, or it was removed) or after
`idle_seconds` without a request. Importing this module imports no Django.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from serving import control, pidfile

CHECK_SECONDS = 10.0
MAX_REQUEST = 1 << 20


def say(name: str, message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {name}[{os.getpid()}]: {message}", flush=True)


def newest_mtime(paths) -> float:
    """The newest modification time among `paths` (folders count by their .py files): a code stamp."""
    stamps = []
    for path in map(Path, paths):
        if path.is_dir():
            stamps += [found.stat().st_mtime for found in path.glob("**/*.py")]
        elif path.exists():
            stamps.append(path.stat().st_mtime)
    return max(stamps)


def import_ahead(name: str, modules) -> None:
    """Import `modules` now, so forked children find them in memory; a failure only costs time."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            say(name, f"could not import {module} ahead of time: {exc!r}")


def detach(output: str, *, flags: int = os.O_APPEND) -> None:
    """In a forked child: a session of its own, stdin from /dev/null, output to `output`."""
    os.setsid()
    log = os.open(output, os.O_WRONLY | os.O_CREAT | flags, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def exit_now(code: int) -> NoReturn:
    """Leave a forked child at once (no cleanup inherited from the server), output flushed."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def serve(
    path: str,
    *,
    name: str,
    command: str,
    warm: Callable[[], None],
    stamp: Callable[[], float],
    child: Callable[[socket.socket, socket.socket, dict], None],
    idle_seconds: float,
    reply_pid: bool,
) -> None:
    """Warm up, listen on `path`, and fork `child(conn, server, request)` for each `command`.

    `child` runs in the forked process and must never return (it ends with os._exit).
    """
    started = time.monotonic()
    warm()
    code_stamp = stamp()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave through `finally`: remove the socket
    server, identity = control.bind_control_socket(path)
    server.settimeout(CHECK_SECONDS)
    say(name, f"ready after {time.monotonic() - started:.1f}s, listening on {path}")
    last_request = time.monotonic()
    try:
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                if not control.still_ours(path, identity):
                    say(name, "my socket is gone; leaving")
                    return
                if time.monotonic() - last_request > idle_seconds:
                    say(name, f"idle for {idle_seconds:.0f}s; leaving")
                    return
                continue
            last_request = time.monotonic()
            with conn:
                conn.settimeout(5)
                try:
                    request = control.ControlConnection(conn, MAX_REQUEST).read_command()
                except (OSError, ValueError) as exc:
                    say(name, f"bad request: {exc!r}")
                    continue
                cmd = request.get("cmd") if isinstance(request, dict) else None
                if cmd == "ping":
                    control.reply(conn, {"ok": True, "pid": os.getpid(), "stamp": code_stamp})
                    continue
                if cmd != command:
                    control.reply(conn, {"ok": False, "error": f"unknown command {cmd!r}"})
                    continue
                if stamp() != code_stamp:
                    control.reply(
                        conn, {"ok": False, "stale": True, "error": "stale: the code changed since I started"}
                    )
                    say(name, "the code changed; leaving so a fresh server takes over")
                    return
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    child(conn, server, request)
                if reply_pid:
                    if request.get("pid_file"):  # recorded before anyone learns the pid
                        pidfile.write(request["pid_file"], pid)
                    control.reply(conn, {"ok": True, "pid": pid})
    finally:
        control.remove_control_socket(path, identity)
