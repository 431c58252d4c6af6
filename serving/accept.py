"""Accept connections from the shared listener so that the workers share them evenly.

With one listening socket and several processes, whichever worker wakes first takes every
pending connection: 16 keep-alive clients may all land on one worker while the other idles (seen
here: 16/0). Each worker publishes how many connections it holds in shared memory and, when it
holds more than another worker, leaves the connection to that one; it looks again a moment later,
so a worker that is busy with a long prediction cannot leave connections waiting for long.
"""

from __future__ import annotations

import logging
import math
import socket

log = logging.getLogger("serving.accept")

DEFER_SECONDS = 0.001
MAX_ACCEPTS_PER_WAKE = 16


class BalancedAcceptor:
    """Accepts for one worker; `gauges[i]` is worker i's open connections (inf: not accepting)."""

    def __init__(self, loop, listener: socket.socket, protocol_factory, gauges: memoryview, index: int):
        self.loop = loop
        self.listener = listener
        self.fd = listener.fileno()
        self.protocol_factory = protocol_factory
        self.gauges = gauges
        self.index = index
        self.others = [other for other in range(len(gauges)) if other != index]
        self.open = 0
        self.overdue = False
        self.accepting = False

    def start(self) -> None:
        self.listener.setblocking(False)
        self.gauges[self.index] = self.open
        self.accepting = True
        self.loop.add_reader(self.fd, self.on_readable)

    def stop(self) -> None:
        """Stop accepting; closes only this process's copy of the listener."""
        if self.accepting:
            self.accepting = False
            self.loop.remove_reader(self.fd)
        self.gauges[self.index] = math.inf
        self.listener.close()

    def closed(self) -> None:
        """A connection ended."""
        self.open -= 1
        if self.accepting:
            self.gauges[self.index] = self.open

    def on_readable(self) -> None:
        gauges = self.gauges
        for _ in range(MAX_ACCEPTS_PER_WAKE):
            if not self.overdue and self.others and self.open > min(gauges[other] for other in self.others):
                self.defer()
                return
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return  # another worker took it
            except OSError as exc:  # EMFILE and the like: back off rather than spin
                log.error("accept failed: %s", exc)
                self.defer()
                return
            self.overdue = False
            self.open += 1
            gauges[self.index] = self.open
            self.loop.create_task(self.adopt(conn))

    async def adopt(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.protocol_factory, conn)
        except OSError:
            conn.close()
            self.closed()

    def defer(self) -> None:
        self.loop.remove_reader(self.fd)
        self.loop.call_later(DEFER_SECONDS, self.resume)

    def resume(self) -> None:
        if self.accepting:
            self.overdue = True
            self.loop.add_reader(self.fd, self.on_readable)
