"""A worker process: prepare the model, wait for the master's go, serve HTTP on the shared listener.

Talks to the master over two pipes: it writes b"L" once the model is ready and b"S" once it
accepts connections; it reads one byte from the go pipe before it starts accepting (EOF there
means the master is gone, and the worker leaves). On SIGTERM it stops accepting, lets the
connections drain (see protocol.py) and exits within GRACEFUL_SHUTDOWN_SECONDS.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import time
from email.utils import formatdate

import uvloop

from serving import batching, metrics
from serving.accept import BalancedAcceptor
from serving.access import AccessControl
from serving.app import ServingApp
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


async def serve(
    app: ServingApp,
    state: ServerState,
    listener: socket.socket,
    limits: Limits,
    gauges: memoryview,
    index: int,
    status_fd: int,
    early: list,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if early:
        stop.set()
    acceptor = BalancedAcceptor(
        loop, listener, lambda: HttpConnection(app, state, limits, loop), gauges, index
    )
    state.on_close = acceptor.closed
    acceptor.start()
    background = [
        asyncio.create_task(tick(state, stop, os.getppid())),
        asyncio.create_task(sweep_connections(state, limits)),
    ]
    os.write(status_fd, b"S")
    await stop.wait()

    # Stop accepting (this closes only this process's copy of the listener), then drain.
    state.draining = True
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


def run(
    index: int,
    settings: Settings,
    model: Model,
    listener: socket.socket,
    shared: metrics.SharedMetrics,
    status_fd: int,
    go_fd: int,
    portal_key: bytes | None = None,
) -> int:
    """The worker's whole life; returns its exit code."""
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
        access=AccessControl(settings.access_file, shared.access_generation, portal_key)
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
    if not os.read(go_fd, 1):
        return 0
    # A stop signal from here until the loop installs its handlers is remembered, not acted on
    # mid-way through building the loop.
    early: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: early.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: early.append(signum))
    uvloop.run(serve(app, state, listener, limits, shared.connection_gauges, index, status_fd, early))
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
