"""A worker process: prepare the model, wait for the master's go, serve HTTP on the shared listener.

Talks to the master over two pipes: it writes b"L" once the model is ready and b"S" once it
accepts connections; it reads one byte from the go pipe before it starts accepting (EOF there
means the master is gone, and the worker leaves). On SIGTERM it stops accepting, lets the
connections drain (see protocol.py) and exits within GRACEFUL_SHUTDOWN_SECONDS.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import socket
import sys
import time
from email.utils import formatdate

import uvloop

from serving import batching, identity, metrics
from serving.accept import BalancedAcceptor
from serving.access import AccessControl
from serving.app import ServingApp
from serving.canary import ForwardedConnection, Routing
from serving.config import Settings
from serving.model import Model, ModelError
from serving.protocol import HttpConnection, Limits, ServerState, sweep_connections
from serving.request_log import RequestLog

log = logging.getLogger("serving.worker")

# Leaves a second of the 9 s SIGTERM budget for the master to reap and exit.
GRACEFUL_SHUTDOWN_SECONDS = 7.5


def _exit_now(signum, frame) -> None:
    raise SystemExit(0)


async def tick(state: ServerState, stop: asyncio.Event, master_pid: int) -> None:
    """Refresh the Date header every second; stop if the master has died (SIGKILL, OOM)."""
    while True:
        state.date_header = b"date: %s\r\n" % formatdate(time.time(), usegmt=True).encode()
        if os.getppid() != master_pid:
            log.error("The master process is gone; stopping.")
            stop.set()
        await asyncio.sleep(1.0)


def micro_batching(settings: Settings, model: Model) -> batching.MicroBatch | None:
    """The micro-batching to use, if it is on and gives this model's one-row answers exactly."""
    if not settings.microbatch or settings.microbatch_max_rows < 2:
        return None
    if model.row_kernel is not None:
        log.info("Micro-batching not used: the one-row kernel answers single rows faster.")
        return None
    try:
        exact = batching.answers_exactly(model, settings.microbatch_max_rows)
    except Exception as exc:
        log.warning("Micro-batching not used: batched predictions failed on the sample: %s", exc)
        return None
    if not exact:
        log.info("Micro-batching not used: this backend's batched answers differ from its one-row answers.")
        return None
    log.info(
        "Micro-batching single rows: up to %d rows, waiting %s.",
        settings.microbatch_max_rows,
        f"{settings.microbatch_wait_us} us"
        if settings.microbatch_wait_us
        else "for the event-loop iteration",
    )
    return batching.MicroBatch(settings.microbatch_max_rows, settings.microbatch_wait_us / 1e6)


class MasterMessages:
    """What the master says on the go pipe once the worker runs: b"G" (accept on the public
    listener too) and b"C" + JSON + b"\n" (the canary split, acknowledged with b"C" on the status
    pipe once every connection uses it). EOF means the master is gone."""

    def __init__(self, go_fd: int, status_fd: int, acceptor: BalancedAcceptor, routing: Routing, stop):
        self.go_fd, self.status_fd = go_fd, status_fd
        self.acceptor, self.routing, self.stop = acceptor, routing, stop
        self.buffer = b""

    def on_readable(self) -> None:
        try:
            data = os.read(self.go_fd, 65536)
        except BlockingIOError:
            return
        if not data:
            asyncio.get_running_loop().remove_reader(self.go_fd)
            self.stop.set()
            return
        self.buffer += data
        while self.buffer:
            if self.buffer[:1] == b"G":
                self.buffer = self.buffer[1:]
                self.accept_public()
            elif self.buffer[:1] == b"C":
                line, found, rest = self.buffer.partition(b"\n")
                if not found:
                    return
                self.buffer = rest
                self.routing.apply(json.loads(line[1:]) or None)
                os.write(self.status_fd, b"C")
            else:
                log.error("Unknown message from the master: %r", self.buffer[:20])
                self.buffer = b""

    def accept_public(self) -> None:
        if not self.acceptor.accepting and not self.stop.is_set():
            self.acceptor.start()
            os.write(self.status_fd, b"S")


async def serve(
    app: ServingApp,
    state: ServerState,
    listener: socket.socket,
    limits: Limits,
    gauges: memoryview,
    index: int,
    status_fd: int,
    early: list,
    *,
    go_fd: int | None = None,
    public: bool = True,
    forward_listener: socket.socket | None = None,
    split: dict | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if early:
        stop.set()
    # The connections' app is read from `routing` once per connection, never per request.
    routing = Routing(app, loop, state)
    routing.apply(split)
    acceptor = BalancedAcceptor(
        loop, listener, lambda: HttpConnection(routing.app, state, limits, loop), gauges, index
    )
    state.on_close = acceptor.closed
    forward_server = None
    if forward_listener is not None:
        # Requests a stable revision forwards to this one, as its canary (see canary.py).
        forward_listener.setblocking(False)
        forward_server = await loop.create_unix_server(
            lambda: ForwardedConnection(app, state, limits, loop), sock=forward_listener
        )
        os.write(status_fd, b"F")
    messages = None
    if go_fd is not None:
        messages = MasterMessages(go_fd, status_fd, acceptor, routing, stop)
        os.set_blocking(go_fd, False)
        loop.add_reader(go_fd, messages.on_readable)
    if public:
        acceptor.start()
        os.write(status_fd, b"S")
    background = [
        asyncio.create_task(tick(state, stop, os.getppid())),
        asyncio.create_task(sweep_connections(state, limits)),
    ]
    await stop.wait()

    # Stop accepting (this closes only this process's copy of the listener), then drain.
    state.draining = True
    if go_fd is not None:
        loop.remove_reader(go_fd)
    if forward_server is not None:
        forward_server.close()
    acceptor.stop()
    for connection in list(state.connections):
        connection.shutdown()
    deadline = loop.time() + GRACEFUL_SHUTDOWN_SECONDS
    while state.connections and loop.time() < deadline:
        await asyncio.sleep(0.02)
    for connection in list(state.connections):
        log.warning("Closing a connection still busy at the shutdown deadline.")
        connection.transport.abort()
    for task in background:
        task.cancel()
    routing.apply(None)


def run(
    index: int,
    settings: Settings,
    model: Model,
    listener: socket.socket,
    shared: metrics.SharedMetrics,
    status_fd: int,
    go_fd: int,
    portal_key: bytes | None = None,
    forward_listener: socket.socket | None = None,
    split: dict | None = None,
) -> int:
    """The worker's whole life; returns its exit code.

    The master's first byte on the go pipe says how to start: b"G" accept on the public listener
    (and the forward socket, if any), b"F" on the forward socket only (a canary)."""
    # Until the event loop takes the signals over, stopping means leaving at once.
    signal.signal(signal.SIGTERM, _exit_now)
    signal.signal(signal.SIGINT, _exit_now)
    try:
        model.start()
    except ModelError as exc:
        log.error("%s", exc)
        return 3
    state = ServerState()
    app = ServingApp(
        model,
        max_rows=settings.max_rows,
        max_body_bytes=settings.max_body_bytes,
        access=AccessControl(
            settings.access_file,
            shared.access_generation,
            portal_key,
            identity.Options(settings.jwt_leeway, settings.jwks_ttl, settings.jwks_refresh),
        )
        if settings.access_file
        else None,
        recorder=shared.recorder(index),
        render_metrics=lambda: metrics.render(
            shared, model.name, model.version, model.sha256, model.backend_name
        ),
        state=state,
        microbatch=micro_batching(settings, model),
        request_log=RequestLog(
            model=model.name,
            version=model.version,
            revision=settings.revision,
            sample=settings.log_success_sample,
            refused_per_second=settings.log_refused_per_second,
        ),
    )
    limits = Limits(
        settings.max_body_bytes,
        settings.keepalive_timeout,
        settings.header_timeout,
        settings.body_timeout,
        settings.max_header_bytes,
    )
    # Everything loaded so far lives as long as the worker: keep the collector from walking it
    # (full collections over the model's and libraries' objects show up as latency spikes).
    gc.collect()
    gc.freeze()
    os.write(status_fd, b"L")
    go = os.read(go_fd, 1)
    if not go:
        return 0
    # A stop signal from here until the loop installs its handlers is remembered, not acted on
    # mid-way through building the loop.
    early: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: early.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: early.append(signum))
    uvloop.run(
        serve(
            app,
            state,
            listener,
            limits,
            shared.connection_gauges,
            index,
            status_fd,
            early,
            go_fd=go_fd,
            public=go == b"G",
            forward_listener=forward_listener,
            split=split,
        )
    )
    return 0


def main(*args) -> None:
    """Run the worker in a freshly forked child and never return into the master's code."""
    code = 1
    try:
        code = run(*args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        log.exception("Worker failed")
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
