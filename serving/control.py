"""The control socket: newline-delimited JSON over a unix socket, one response line per request.

Commands: {"cmd": "status"}, {"cmd": "listener"} (the reply carries the listening socket's fd via
SCM_RIGHTS), {"cmd": "serve"}, {"cmd": "reload_access"} (check the access file and have every
worker read it before its next checked request), {"cmd": "metrics"} (the Prometheus text, which
over HTTP is behind the access check). The client side (`send_command`, `request_listener`) is what a
successor process, or the portal's local runtime, uses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

import orjson

log = logging.getLogger("serving.control")

MAX_LINE = 64 * 1024


def send_command(path: str, command: dict, timeout: float = 10.0) -> tuple[dict, list[int]]:
    """Send one command and return the reply and any file descriptors that came with it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(path)
        conn.sendall(orjson.dumps(command) + b"\n")
        data, fds = b"", []
        while not data.endswith(b"\n"):
            chunk, new_fds, _flags, _addr = socket.recv_fds(conn, MAX_LINE, 4)
            if not chunk:
                break
            data += chunk
            fds += new_fds
    if not data.endswith(b"\n"):
        for fd in fds:
            os.close(fd)
        raise ConnectionError(f"{path} closed the connection without a reply")
    return orjson.loads(data), fds


def request_listener(path: str) -> socket.socket | None:
    """Ask the process behind `path` for its listening socket; None if it cannot give one."""
    try:
        reply, fds = send_command(path, {"cmd": "listener"}, timeout=5.0)
    except (OSError, ValueError) as exc:
        log.info("No listener from %s (%s); binding a new one.", path, exc)
        return None
    if not reply.get("ok") or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        log.info("No listener from %s (reply %s); binding a new one.", path, reply)
        return None
    listener = socket.socket(fileno=fds[0])
    if listener.type != socket.SOCK_STREAM or not listener.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        listener.close()
        log.warning("%s handed over a socket that is not listening; binding a new one.", path)
        return None
    return listener


class ControlConnection:
    """One client of the control socket, with its unfinished input."""

    def __init__(self, conn: socket.socket):
        self.conn = conn
        self.buffer = b""

    def lines(self, data: bytes) -> list[bytes]:
        self.buffer += data
        *complete, self.buffer = self.buffer.split(b"\n")
        if len(self.buffer) > MAX_LINE:
            raise ValueError("control line too long")
        return [line for line in complete if line.strip()]

    def reply(self, document: dict, fds: tuple[int, ...] = ()) -> None:
        payload = orjson.dumps(document) + b"\n"
        with contextlib.suppress(OSError):
            if fds:
                socket.send_fds(self.conn, [payload], list(fds))
            else:
                self.conn.sendall(payload)


def bind_control_socket(path: str) -> tuple[socket.socket, tuple[int, int]]:
    """Listen on `path` (replacing a stale socket file); returns the socket and the file's identity."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(16)
    stat = os.stat(path)
    return server, (stat.st_dev, stat.st_ino)


def remove_control_socket(path: str, identity: tuple[int, int]) -> None:
    """Unlink `path` only if it is still our socket (a successor may have taken the name)."""
    with contextlib.suppress(OSError):
        stat = os.stat(path)
        if (stat.st_dev, stat.st_ino) == identity:
            os.unlink(path)
