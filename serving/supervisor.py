"""The master process: verify and load the model, hold the listener, run the workers.

It never serves HTTP itself. It loads the artifact once (workers inherit it through fork, so its
memory is shared copy-on-write), takes the listening socket from a predecessor or binds it, forks
SERVING_WORKERS workers, answers the control socket, restarts workers that die, and on SIGTERM
tells them to drain and waits for them, killing stragglers before the 9 s budget runs out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

from serving import access, control, metrics, request_log, worker
from serving.artifacts import ArtifactError, fetch_verified
from serving.config import ConfigError, Settings
from serving.model import PICKLED, Model, ModelError, load_estimator

log = logging.getLogger("serving")

STOP_DEADLINE = 8.7  # seconds from SIGTERM to exit, whatever the workers do
SERVE_REPLY_TIMEOUT = 30.0
FORWARD_BACKLOG = 1024
MAX_CRASHES = 5  # within CRASH_WINDOW seconds, after which the server gives up
CRASH_WINDOW = 60.0


class StartupError(Exception):
    """The server cannot start; the message says why."""


def bind_listener(host: str, port: int) -> socket.socket:
    """Bind host:port with SO_REUSEADDR (never SO_REUSEPORT: the socket is shared by handing it on)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and address[0] == "::":
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(address)
        listener.listen(2048)
    except OSError as exc:
        raise StartupError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return listener


@dataclass
class Worker:
    index: int
    pid: int
    status_fd: int
    go_fd: int
    loaded: bool = False
    accepting: bool = False
    forwarding: bool = False  # accepting on the forward socket
    mode: bytes = b""  # what it was released to do: b"F" forwarded requests only, b"G" everything
    split_version: int = 0  # the canary split it was given (at its fork, or on its go pipe)
    splits_sent: int = 0
    splits_acked: int = 0


@dataclass
class PendingServe:
    """A control command answered once the workers have done it (or its deadline passed)."""

    connection: control.ControlConnection
    deadline: float
    kind: str = "serve"  # serve | forward | canary


@dataclass
class Supervisor:
    settings: Settings
    model: Model
    listener: socket.socket
    workers: dict[int, Worker] = field(default_factory=dict)  # by pid
    serving: bool = False
    stopping: bool = False
    crashes: list[float] = field(default_factory=list)
    # A canary: told to take the requests a stable revision forwards (not the public listener's).
    forwarded: bool = False
    forward_listener: socket.socket | None = None
    # A stable revision with a canary: {"to": its forward socket, "percent": its share}.
    split: dict | None = None
    split_version: int = 0

    def __post_init__(self):
        self.shared = metrics.SharedMetrics(self.settings.workers, labels=self.settings.metric_labels)
        self.selector = selectors.DefaultSelector()
        self.pending_serves: list[PendingServe] = []
        self.control_server = None
        self.serving = self.settings.control_socket is None
        self.port = self.listener.getsockname()[1]
        self.wake_fds: tuple[int, int] = ()
        # The portal's key (see serving.access): made before the workers fork, so they all know
        # it; given only over the control socket.
        self.portal_key = (
            ("mepp_" + secrets.token_urlsafe(32)).encode() if self.settings.control_socket else None
        )

    # Workers.

    def spawn(self, index: int) -> None:
        status_read, status_write = os.pipe()
        go_read, go_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(status_read)
            os.close(go_write)
            self.selector.close()
            if self.control_server is not None:
                self.control_server.close()
            for other in self.workers.values():
                os.close(other.status_fd)
                os.close(other.go_fd)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in self.wake_fds:
                os.close(fd)
            worker.main(
                index,
                self.settings,
                self.model,
                self.listener,
                self.shared,
                status_write,
                go_read,
                self.portal_key,
                self.forward_listener,
                self.split,
            )
        os.close(status_write)
        os.close(go_read)
        os.set_blocking(status_read, False)
        self.workers[pid] = Worker(index, pid, status_read, go_write, split_version=self.split_version)
        self.selector.register(status_read, selectors.EVENT_READ, ("worker", pid))

    def release(self, child: Worker) -> None:
        """Let a loaded worker start accepting: everything once told to serve, else (a canary) only
        the forwarded requests."""
        mode = b"G" if self.serving else b"F" if self.forwarded else b""
        if not mode or child.mode in (mode, b"G"):
            return
        child.mode = mode
        with contextlib.suppress(OSError):
            os.write(child.go_fd, mode)
        if child.split_version != self.split_version:
            self.send_split(child)

    def send_split(self, child: Worker) -> None:
        child.split_version = self.split_version
        child.splits_sent += 1
        with contextlib.suppress(OSError):
            os.write(child.go_fd, b"C" + json.dumps(self.split).encode() + b"\n")

    def on_worker_status(self, pid: int) -> None:
        child = self.workers.get(pid)
        if child is None:
            return
        try:
            data = os.read(child.status_fd, 64)
        except BlockingIOError:
            return
        if not data:
            self.selector.unregister(child.status_fd)
            return
        if b"L" in data:
            child.loaded = True
            self.release(child)
            if self.ready:
                log.info("Model loaded in all %d workers.", len(self.workers))
        if b"S" in data:
            child.accepting = True
        if b"F" in data:
            child.forwarding = True
        child.splits_acked += data.count(b"C")
        self.answer_serves()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.workers.pop(pid, None)
            if child is None:
                continue
            self.shared.connection_gauges[child.index] = math.inf  # others stop leaving connections to it
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(child.status_fd)
            os.close(child.status_fd)
            os.close(child.go_fd)
            if self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            if not child.loaded:
                raise StartupError(f"Worker {child.index} exited with {code} before the model was ready.")
            now = time.monotonic()
            self.crashes = [moment for moment in self.crashes if now - moment < CRASH_WINDOW] + [now]
            if len(self.crashes) > MAX_CRASHES:
                raise StartupError(f"Workers crashed {len(self.crashes)} times in {CRASH_WINDOW:.0f} s.")
            log.error("Worker %d (pid %d) exited with %s; starting a new one.", child.index, pid, code)
            self.spawn(child.index)

    @property
    def ready(self) -> bool:
        return (
            len(self.workers) == self.settings.workers
            and all(child.loaded for child in self.workers.values())
            and self.listener.fileno() >= 0
        )

    @property
    def accepting(self) -> bool:
        return bool(self.workers) and all(child.accepting for child in self.workers.values())

    # Control socket.

    def on_control_accept(self) -> None:
        conn, _ = self.control_server.accept()
        conn.setblocking(False)
        self.selector.register(conn, selectors.EVENT_READ, ("control", control.ControlConnection(conn)))

    def on_control_data(self, connection: control.ControlConnection) -> None:
        try:
            data = connection.conn.recv(65536)
            lines = connection.lines(data) if data else None
        except (OSError, ValueError):
            lines = None
        if lines is None:
            self.drop_control(connection)
            return
        for line in lines:
            self.on_command(connection, line)

    def drop_control(self, connection: control.ControlConnection) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(connection.conn)
        connection.conn.close()
        self.pending_serves = [
            pending for pending in self.pending_serves if pending.connection is not connection
        ]

    def status(self) -> dict:
        status = {"pid": os.getpid(), "ready": self.ready, "serving": self.accepting, "port": self.port}
        if self.forward_listener is not None:
            status["forwarded"] = self.forwarding  # taking the requests a stable revision forwards
        if self.split:
            status["canary"] = self.split
        return status

    @property
    def forwarding(self) -> bool:
        return bool(self.workers) and all(child.forwarding for child in self.workers.values())

    def set_split(self, command: dict) -> dict | None:
        """Start, change or end the canary split; an error answer, or None once the workers have it."""
        percent, to = command.get("percent"), command.get("to")
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            return {"ok": False, "error": "percent must be a whole number from 0 (no canary) to 100"}
        if percent and (not isinstance(to, str) or not to):
            return {"ok": False, "error": "to must name the canary's forward socket"}
        if percent and to == self.settings.forward_socket:
            return {"ok": False, "error": "a revision cannot be its own canary"}
        if percent:
            problem = _check_forward_socket(to)
            if problem:
                return {"ok": False, "error": f"the canary's forward socket {to}: {problem}"}
        split = {"to": to, "percent": percent} if percent else None
        if split != self.split:
            self.split = split
            self.split_version += 1
            log.info(
                "Canary: %s.",
                f"{percent}% of requests go to {to}" if split else "none, every request is answered here",
            )
            for child in self.workers.values():
                if child.mode:
                    self.send_split(child)
        return None

    def on_command(self, connection: control.ControlConnection, line: bytes) -> None:
        try:
            command = control.decode(line)
            name = command.get("cmd") if isinstance(command, dict) else None
        except ValueError:
            name = None
        if name == "status":
            connection.reply(self.status())
        elif name == "listener":
            connection.reply({"ok": True}, (self.listener.fileno(),))
        elif name == "reload_access":
            connection.reply(self.reload_access())
        elif name == "portal_key":
            # The portal's way to call the endpoint itself (the playground): see serving.access.
            if self.portal_key is None:
                connection.reply({"ok": False, "error": "this server has no portal key"})
            else:
                connection.reply({"ok": True, "key": self.portal_key.decode()})
        elif name == "metrics":
            # The portal's way to read metrics: /metrics is behind the access check when there is
            # an access file, and this socket is reachable only by the portal's own user.
            model = self.model
            # The backend is picked in each worker (model.start); the supervisor does not know it.
            backend = model.backend_name if model.backend is not None else ""
            text = metrics.render(self.shared, model.name, model.version, model.sha256, backend)
            connection.reply({"ok": True, "metrics": text.decode()})
        elif name == "serve":
            if not self.serving:
                log.info("Told to serve: workers start accepting.")
                self.serving = True
            for child in self.workers.values():
                if child.loaded:
                    self.release(child)
            self.pending_serves.append(PendingServe(connection, time.monotonic() + SERVE_REPLY_TIMEOUT))
            self.answer_serves()
        elif name == "serve_forwarded":
            if self.forward_listener is None:
                connection.reply(
                    {"ok": False, "error": "this server has no forward socket (SERVING_FORWARD_SOCKET)"}
                )
                return
            if not self.forwarded:
                log.info("Told to serve as a canary: workers take the requests forwarded to them.")
                self.forwarded = True
            for child in self.workers.values():
                if child.loaded:
                    self.release(child)
            self.pending_serves.append(
                PendingServe(connection, time.monotonic() + SERVE_REPLY_TIMEOUT, kind="forward")
            )
            self.answer_serves()
        elif name == "canary":
            refusal = self.set_split(command)
            if refusal:
                connection.reply(refusal)
                return
            self.pending_serves.append(
                PendingServe(connection, time.monotonic() + SERVE_REPLY_TIMEOUT, kind="canary")
            )
            self.answer_serves()
        else:
            connection.reply(
                {
                    "ok": False,
                    "error": 'unknown command; use "status", "listener", "serve", "serve_forwarded", '
                    '"canary", "reload_access", "metrics" or "portal_key"',
                }
            )

    def reload_access(self) -> dict:
        """Check the access file, then have every worker re-read it before its next checked request.

        The generation lives in shared memory and workers compare it on every check, so when this
        answers, no request that arrives afterwards is judged by the old policy.
        """
        if not self.settings.access_file:
            return {"ok": False, "error": "this server has no access file (SERVING_ACCESS_FILE is unset)"}
        try:
            policy = access.validate_file(self.settings.access_file)
        except ConfigError as exc:
            return {"ok": False, "error": str(exc)}
        self.shared.access_generation[0] += 1
        log.info("Access policy reloaded (mode %s).", policy.mode)
        return {"ok": True, **access.describe(policy)}

    def answer_serves(self) -> None:
        if not self.pending_serves:
            return
        now = time.monotonic()
        waiting = []
        complete = len(self.workers) == self.settings.workers
        for pending in self.pending_serves:
            if pending.kind == "canary":
                if all(child.splits_acked >= child.splits_sent for child in self.workers.values()):
                    pending.connection.reply({"ok": True, "canary": self.split})
                elif now > pending.deadline:
                    pending.connection.reply({"ok": False, "error": "workers did not take the canary split"})
                else:
                    waiting.append(pending)
            elif pending.kind == "forward":
                if self.forwarding and complete:
                    pending.connection.reply({"ok": True, "forwarded": True})
                elif now > pending.deadline:
                    pending.connection.reply(
                        {"ok": False, "forwarded": False, "error": "workers are not accepting"}
                    )
                else:
                    waiting.append(pending)
            elif self.accepting and complete:
                pending.connection.reply({"ok": True, "serving": True})
            elif now > pending.deadline:
                pending.connection.reply(
                    {"ok": False, "serving": False, "error": "workers are not accepting"}
                )
            else:
                waiting.append(pending)
        self.pending_serves = waiting

    # Main loop.

    def run(self) -> int:
        wake_read, wake_write = self.wake_fds = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        received: list[int] = []
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, lambda signum, frame: received.append(signum))
        self.selector.register(wake_read, selectors.EVENT_READ, ("wake", None))
        control_identity = None
        if self.settings.control_socket:
            self.control_server, control_identity = control.bind_control_socket(self.settings.control_socket)
            self.control_server.setblocking(False)
            self.selector.register(self.control_server, selectors.EVENT_READ, ("accept", None))
        forward_identity = None
        if self.settings.forward_socket:
            # Owner-only, like the control socket: a forwarded request's caller address is believed.
            self.forward_listener, forward_identity = control.bind_control_socket(
                self.settings.forward_socket
            )
            self.forward_listener.listen(FORWARD_BACKLOG)
        for index in range(self.settings.workers):
            self.spawn(index)
        log.info(
            "Serving %s version %s on port %d with %d workers%s.",
            self.model.name,
            self.model.version,
            self.port,
            self.settings.workers,
            "" if self.serving else ", accepting once told to serve",
        )
        stop_deadline = None
        give_up_at = time.monotonic() + self.settings.serve_within
        try:
            while True:
                timeout = (
                    0.5 if stop_deadline is None else max(0.0, min(0.1, stop_deadline - time.monotonic()))
                )
                for key, _ in self.selector.select(timeout):
                    kind, data = key.data
                    if kind == "wake":
                        with contextlib.suppress(BlockingIOError):
                            os.read(wake_read, 4096)
                    elif kind == "worker":
                        self.on_worker_status(data)
                    elif kind == "accept":
                        self.on_control_accept()
                    elif kind == "control":
                        self.on_control_data(data)
                if (signal.SIGTERM in received or signal.SIGINT in received) and not self.stopping:
                    stop_deadline = time.monotonic() + STOP_DEADLINE
                    self.stop()
                elif not (self.serving or self.forwarded or self.stopping) and time.monotonic() >= give_up_at:
                    log.warning(
                        "Not told to serve within %gs of starting; exiting.", self.settings.serve_within
                    )
                    stop_deadline = time.monotonic() + STOP_DEADLINE
                    self.stop()
                received.clear()
                try:
                    self.reap()
                except StartupError:
                    self.kill_all()
                    raise
                self.answer_serves()
                if self.stopping:
                    if not self.workers:
                        return 0
                    if time.monotonic() >= stop_deadline:
                        for pid in list(self.workers):
                            log.error("Worker pid %d did not stop in time; killing it.", pid)
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(pid, signal.SIGKILL)
                        stop_deadline += 1.0
        finally:
            if control_identity is not None:
                control.remove_control_socket(self.settings.control_socket, control_identity)
            if forward_identity is not None:
                control.remove_control_socket(self.settings.forward_socket, forward_identity)

    def kill_all(self) -> None:
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in self.workers:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.workers.clear()

    def stop(self) -> None:
        log.info("Stopping: workers finish their requests and exit.")
        self.stopping = True
        if self.control_server is not None:
            self.selector.unregister(self.control_server)
            self.control_server.close()
            self.control_server = None
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        # The master's copy of the listener goes too; a successor holding its own copy is unaffected.
        self.listener.close()
        if self.forward_listener is not None:
            self.forward_listener.close()


def _check_forward_socket(path: str) -> str:
    """Why requests cannot be forwarded to `path` ("" when a server accepts there)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError as exc:
            return exc.strerror or str(exc)
    return ""


def prepare(settings: Settings) -> tuple[Model, socket.socket]:
    """Everything before forking: verify, load, convert, and hold the listener."""
    path = fetch_verified(
        settings.model_uri, settings.meta.sha256, settings.model_cache_dir, settings.download_wait
    )
    log.info("Artifact %s verified (sha256 %s).", path, settings.meta.sha256)
    if settings.access_file:
        access.validate_file(settings.access_file)
    if settings.meta.format == "onnx":
        model = Model.from_onnx(path.read_bytes(), settings.meta, settings.accelerate)
    else:
        meta = settings.meta
        if meta.format in PICKLED and settings.allow_pickle:
            logging.getLogger("serving.model").warning(
                "LOADING A %s ARTIFACT: it can run arbitrary code. "
                "SERVING_ALLOW_PICKLE=true says it is trusted.",
                meta.format.upper(),
            )
        estimator = load_estimator(path, meta.format, meta.trusted_types, allow_pickle=settings.allow_pickle)
        model = Model.from_estimator(estimator, settings.meta, settings.accelerate)
    listener = control.request_listener(settings.handoff_from) if settings.handoff_from else None
    if listener is not None:
        log.info("Sharing the listening socket of the process behind %s.", settings.handoff_from)
    else:
        listener = bind_listener(settings.host, settings.port)
    return model, listener


def main() -> None:
    handler = logging.StreamHandler(sys.stderr)
    try:
        handler.setFormatter(request_log.log_formatter())
    except ValueError as exc:
        print(f"Not starting: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=os.environ.get("SERVING_LOG_LEVEL", "INFO").upper(), handlers=[handler])
    try:
        settings = Settings.from_env()
        model, listener = prepare(settings)
        code = Supervisor(settings, model, listener).run()
    except (ConfigError, ArtifactError, ModelError, StartupError) as exc:
        log.error("Not starting: %s", exc)
        sys.exit(2)
    sys.exit(code)
