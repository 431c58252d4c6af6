"""A worker process: prepare the model, wait for the master's go, serve HTTP on the shared listener.

Talks to the master over two pipes: it writes b"L" once the model is ready and b"S" once it
accepts connections; it reads one byte from the go pipe before it starts accepting (EOF there
means the master is gone, and the worker leaves).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys

import uvicorn

from serving import metrics
from serving.access import AccessControl
from serving.app import ServingApp
from serving.config import Settings
from serving.model import Model, ModelError
from serving.protocol import ServingProtocol, sweep_connections

log = logging.getLogger("serving.worker")

# Leaves a second of the 9 s SIGTERM budget for the master to reap and exit.
GRACEFUL_SHUTDOWN_SECONDS = 7.5


class WorkerServer(uvicorn.Server):
    """uvicorn's server, telling the master when it accepts and the app when it drains."""

    def __init__(self, config: uvicorn.Config, app: ServingApp, settings: Settings, status_fd: int):
        super().__init__(config)
        self.app = app
        self.settings = settings
        self.status_fd = status_fd
        self.master_pid = os.getppid()
        self.early_signals: list[int] = []

    def note_early_signal(self, signum, frame) -> None:
        """Remember a stop signal that came before uvicorn took the handlers over."""
        self.early_signals.append(signum)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            settings = self.settings
            self.sweeper = asyncio.create_task(
                sweep_connections(
                    self, settings.keepalive_timeout, settings.header_timeout, settings.body_timeout
                )
            )
            os.write(self.status_fd, b"S")
        if self.early_signals:
            self.handle_exit(self.early_signals[0], None)

    async def on_tick(self, counter: int) -> bool:
        # A worker whose master died (SIGKILL, OOM) must not serve on alone.
        if counter % 10 == 0 and os.getppid() != self.master_pid:
            self.handle_exit(signal.SIGTERM, None)
        return await super().on_tick(counter)

    def handle_exit(self, sig, frame) -> None:
        self.app.draining = True
        super().handle_exit(sig, frame)


def _exit_now(signum, frame) -> None:
    raise SystemExit(0)


def run(
    index: int,
    settings: Settings,
    model: Model,
    listener: socket.socket,
    shared: metrics.SharedMetrics,
    status_fd: int,
    go_fd: int,
) -> int:
    """The worker's whole life; returns its exit code."""
    # Until uvicorn takes over the signals, stopping means leaving at once.
    signal.signal(signal.SIGTERM, _exit_now)
    signal.signal(signal.SIGINT, _exit_now)
    try:
        model.start()
    except ModelError as exc:
        log.error("%s", exc)
        return 3
    access = AccessControl(settings.access_file) if settings.access_file else None
    app = ServingApp(
        model,
        max_body_bytes=settings.max_body_bytes,
        max_rows=settings.max_rows,
        access=access,
        recorder=shared.recorder(index),
        render_metrics=lambda: metrics.render(
            shared, model.name, model.version, model.sha256, model.backend.name
        ),
    )
    os.write(status_fd, b"L")
    if not os.read(go_fd, 1):
        return 0
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=ServingProtocol,
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        timeout_keep_alive=int(settings.keepalive_timeout) or 1,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        backlog=2048,
    )
    server = WorkerServer(config, app, settings, status_fd)
    # From here a stop signal must not interrupt the event loop's creation: note it instead.
    signal.signal(signal.SIGTERM, server.note_early_signal)
    signal.signal(signal.SIGINT, server.note_early_signal)
    server.run(sockets=[listener])
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
