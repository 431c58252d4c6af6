"""Control sockets: newline-delimited JSON over a unix socket only its owner may use, one answer
line per command. This module is both ends of that protocol, for the serving process, the portal's
local runtime and the worker's fork servers (worker/forkserver.py).

The serving process answers {"cmd": "status"}, {"cmd": "listener"} (the reply carries the listening
socket's fd via SCM_RIGHTS), {"cmd": "serve"}, {"cmd": "reload_access"} (check the access file and
have every worker read it before its next checked request), {"cmd": "metrics"} (the Prometheus
text, which over HTTP is behind the access check) and {"cmd": "portal_key"} (the key the portal's
playground calls with, see serving.access). A successor process takes the listener with
`request_listener`; anyone else asks with `send_command`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket

log = logging.getLogger("serving.control")

MAX_LINE = 64 * 1024
BACKLOG = 64


class ControlError(Exception):
    """The control socket gave no answer: absent, refused, closed early, timed out, or not a JSON object."""


def encode(document: dict) -> bytes:
    """A document as one line of the protocol."""
    return json.dumps(document).encode() + b"\n"


def decode(line: bytes):
    """The JSON value of one line; ValueError when it is not JSON."""
    return json.loads(line)


def send_command(path: str | os.PathLike, command: dict, *, timeout: float = 10.0) -> dict:
    """Send one command and return its answer (which may say {"ok": false}); ControlError if none."""
    answer, fds = _exchange(path, command, timeout)
    _close(fds)
    return answer


def _exchange(path: str | os.PathLike, command: dict, timeout: float) -> tuple[dict, list[int]]:
    """One command; its answer and any file descriptors that came with it."""
    name = os.path.basename(os.fspath(path))
    data, fds = b"", []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(os.fspath(path))
            conn.sendall(encode(command))
            while b"\n" not in data:
                chunk, new_fds, _flags, _addr = socket.recv_fds(conn, MAX_LINE, 4)
                fds += new_fds
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            _close(fds)
            raise ControlError(f"{name}: {exc.strerror or exc}") from None
    line = data.split(b"\n", 1)[0]
    try:
        if not line:
            raise ControlError(f"{name}: closed without an answer")
        try:
            answer = decode(line)
        except ValueError:
            raise ControlError(f"{name}: answered {line[:200]!r}, not JSON") from None
        if not isinstance(answer, dict):
            raise ControlError(f"{name}: answered {answer!r}")
    except ControlError:
        _close(fds)
        raise
    return answer, fds


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def request_listener(path: str) -> socket.socket | None:
    """Ask the process behind `path` for its listening socket; None if it cannot give one."""
    try:
        reply, fds = _exchange(path, {"cmd": "listener"}, 5.0)
    except ControlError as exc:
        log.info("No listener from %s (%s); binding a new one.", path, exc)
        return None
    if not reply.get("ok") or len(fds) != 1:
        _close(fds)
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


# The server's side --------------------------------------------------------------------------------


def reply(conn: socket.socket, document: dict, fds: tuple[int, ...] = ()) -> None:
    """Answer on `conn` (with `fds` passed along); a client that left gets nothing."""
    payload = encode(document)
    with contextlib.suppress(OSError):
        if fds:
            socket.send_fds(conn, [payload], list(fds))
        else:
            conn.sendall(payload)


class ControlConnection:
    """One client of a control socket, with its unfinished input."""

    def __init__(self, conn: socket.socket, max_line: int = MAX_LINE):
        self.conn = conn
        self.max_line = max_line
        self.buffer = b""

    def lines(self, data: bytes) -> list[bytes]:
        """The lines `data` completes; ValueError when a line grows past the limit."""
        self.buffer += data
        *complete, self.buffer = self.buffer.split(b"\n")
        if len(self.buffer) > self.max_line:
            raise ValueError("control line too long")
        return [line for line in complete if line.strip()]

    def read_command(self):
        """Wait for the first line (the socket's timeout applies) and return its JSON value.

        OSError when the client leaves first or the wait times out; ValueError when the line is too
        long or not JSON.
        """
        while True:
            data = self.conn.recv(MAX_LINE)
            if not data:
                raise ConnectionError("closed before a whole line")
            lines = self.lines(data)
            if lines:
                return decode(lines[0])

    def reply(self, document: dict, fds: tuple[int, ...] = ()) -> None:
        reply(self.conn, document, fds)


def bind_control_socket(path: str) -> tuple[socket.socket, tuple[int, int]]:
    """Listen on `path`, a socket only this user may use (replacing a stale one); returns the socket
    and the file's identity."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        server.bind(path)
    finally:
        os.umask(old_umask)
    server.listen(BACKLOG)
    return server, _identity(path)


def _identity(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def still_ours(path: str, identity: tuple[int, int]) -> bool:
    """Whether `path` is still the socket we bound (a successor may have taken the name)."""
    try:
        return _identity(path) == identity
    except OSError:
        return False


def remove_control_socket(path: str, identity: tuple[int, int]) -> None:
    """Unlink `path` only if it is still our socket."""
    if still_ours(path, identity):
        with contextlib.suppress(OSError):
            os.unlink(path)
