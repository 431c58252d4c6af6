"""uvicorn's httptools protocol with the connection handling this server needs.

- Timeouts without a timer per request: each connection notes when it entered its current phase
  (idle, reading headers, reading the body) and one sweeper task per worker closes the ones that
  stayed too long, so slow or silent clients cannot pile up.
- A drain that loses no request: on shutdown uvicorn closes idle keep-alive connections at once,
  which races with a client that is just sending its next request on one. Here an idle connection
  stays open a short grace period instead, and a request arriving on it is answered with
  `Connection: close`, so the client reconnects (to the successor, which shares the listener).
- Malformed HTTP gets a JSON 400 like every other error.
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DRAIN_IDLE_GRACE = 2.0
SWEEP_INTERVAL = 0.5
DRAIN_SWEEP_INTERVAL = 0.05

IDLE, HEADERS, BODY, BUSY = range(4)


def _raw_response(status_line: bytes, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    return b"".join(
        [
            status_line,
            b"\r\ncontent-type: application/json\r\ncontent-length: ",
            b"%d" % len(body),
            b"\r\nconnection: close\r\n\r\n",
            body,
        ]
    )


TIMEOUT_RESPONSE = _raw_response(b"HTTP/1.1 408 Request Timeout", "The request took too long to arrive.")


class ServingProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.phase = IDLE
        self.phase_since = self.loop.time()
        self.draining = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.phase = HEADERS
        self.phase_since = self.loop.time()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.phase = BODY
        self.phase_since = self.loop.time()
        if self.draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.phase = BUSY

    def on_response_complete(self) -> None:
        # uvicorn's version arms a keep-alive timer per request; the sweeper does that job.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self.phase == BUSY:
            self.phase = IDLE
            self.phase_since = self.loop.time()

    def send_400_response(self, msg: str) -> None:
        self.transport.write(_raw_response(b"HTTP/1.1 400 Bad Request", msg))
        self.transport.close()

    def shutdown(self) -> None:
        """Start draining: finish what is in flight, answer at most one more request, then close."""
        self.draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        else:
            self.phase_since = max(self.phase_since, self.loop.time())

    def idle(self) -> bool:
        return self.phase == IDLE and (self.cycle is None or self.cycle.response_complete)

    def sweep(self, now: float, limits: dict[int, float]) -> None:
        """Close the connection if it has been in its phase for longer than allowed."""
        if self.transport.is_closing():
            return
        limit = limits.get(self.phase)
        if limit is None or now - self.phase_since <= limit:
            return
        if self.phase == IDLE:
            if self.idle():
                self.transport.close()
        else:
            # Headers or body still arriving: say why before hanging up.
            self.transport.write(TIMEOUT_RESPONSE)
            self.transport.close()


async def sweep_connections(server, keepalive: float, header: float, body: float) -> None:
    """Run for the life of the worker: enforce the idle, header and body timeouts, and the drain grace."""
    loop = asyncio.get_running_loop()
    limits = {IDLE: keepalive, HEADERS: header, BODY: body}
    drain_limits = {IDLE: min(keepalive, DRAIN_IDLE_GRACE), HEADERS: header, BODY: body}
    connections = server.server_state.connections
    while True:
        draining = server.should_exit
        await asyncio.sleep(DRAIN_SWEEP_INTERVAL if draining else SWEEP_INTERVAL)
        now = loop.time()
        for connection in list(connections):
            if isinstance(connection, ServingProtocol):
                connection.sweep(now, drain_limits if connection.draining else limits)
