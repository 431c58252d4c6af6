"""Canary shares: two revisions serve one port, the canary taking an exact share of requests.

The stable revision's serving process owns the port. Told to send a share to a canary (the
control socket's `canary` command, see supervisor.py), each of its workers swaps the app of its
connections for a `CanaryRouter`, which picks the requests by a deterministic counter (request n
goes to the canary when floor((n+1)p) > floor(np), so after any N requests the canary had
floor(N p) of them: exact, not a coin toss) and sends those to the canary's serving process over
its forward socket, a unix socket only this user may open, relaying the answer. The canary judges
access and counts the request in its own metrics, the stable process neither: per-revision
traffic stays right. With no canary set the router is not there at all: the connections hold the
app itself and the request path does not change by one instruction.

The caller's address travels in the `x-serving-client` header, which the router always sets
itself (a caller's own is dropped) and which only a connection on the forward socket believes
(`ForwardedConnection`). Health, readiness, metrics and HEAD requests, and calls made with this
process's portal key (the playground's, see access.py), are always answered by the process that
took them. Should the canary fail to answer (gone, refusing, closing), the stable
process answers the request itself: a canary that dies costs its share nothing but its metrics.

    router = CanaryRouter(app, loop, "/run/ep/ep-d7.fwd.sock", percent=10)
    connection.app = router      # router.handle(request) answers 90 %, forwards 10 %
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import deque

import httptools

from serving.protocol import STATUS_LINES, HttpConnection, Request, Response

log = logging.getLogger("serving.canary")

CLIENT_HEADER = b"x-serving-client"
# Answered by the process that took them: they describe that process, not the model's answers.
LOCAL_PATHS = frozenset({b"/healthz", b"/readyz", b"/metrics"})
# Headers about the hop, not the request: the forwarded request carries its own framing.
HOP_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"content-length",
        b"transfer-encoding",
        b"expect",
        b"te",
        b"upgrade",
        b"proxy-connection",
        CLIENT_HEADER,
    }
)
ANSWER_HOP_HEADERS = frozenset({b"content-length", b"content-type", b"date", b"connection", b"keep-alive"})
FORWARD_TIMEOUT = 60.0  # a canary slower than this is given up on, and the stable answers
MAX_IDLE = 64  # idle connections kept to the canary, per worker


def takes(n: int, percent: int) -> bool:
    """Whether request number n (from 0) goes to a canary given `percent` of the requests."""
    return (n + 1) * percent // 100 > n * percent // 100


class ForwardFailed(Exception):
    """The canary gave no answer to a forwarded request."""


class CanaryRouter:
    """The app of a stable worker's connections while a canary takes a share."""

    def __init__(self, app, loop: asyncio.AbstractEventLoop, path: str, percent: int):
        self.app = app
        self.count = app.count  # the protocol counts what it refuses itself through this
        self.loop = loop
        self.path = path
        self.percent = percent
        self.n = 0
        self.pool = ForwardPool(loop, path)
        self.portal_key = app.access.portal_key if app.access is not None else None

    def handle(self, request: Request) -> Response | None:
        if request.method == b"HEAD" or request.path in LOCAL_PATHS or self.from_portal(request):
            return self.app.handle(request)
        n = self.n
        self.n = n + 1
        if not takes(n, self.percent):
            return self.app.handle(request)
        # Built now: the connection's URL belongs to the next pipelined request once this returns.
        data = forwarded_request(request, request.connection.url)
        self.loop.create_task(self.forward(request, data))
        return None  # the protocol queues the answer's place; forward() delivers it

    def from_portal(self, request: Request) -> bool:
        """A call with this process's portal key (the playground's): the canary has a key of its
        own, so this process answers it."""
        key = self.portal_key
        return key is not None and request.api_key is not None and hmac.compare_digest(request.api_key, key)

    async def forward(self, request: Request, data: bytes) -> None:
        try:
            response = await asyncio.wait_for(self.pool.send(data), FORWARD_TIMEOUT)
        except (TimeoutError, OSError, ForwardFailed) as exc:
            log.warning("The canary behind %s did not answer (%s); answering here.", self.path, exc)
            response = self.app.handle(request)
            if response is None:
                return  # a micro-batch answers it through the connection itself
        request.connection.deliver(request, response)

    def close(self) -> None:
        self.pool.close()


def forwarded_request(request: Request, url: bytes) -> bytes:
    """The request as HTTP/1.1 bytes for the canary: its own framing and the caller's address."""
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method, url)]
    for name, value in request.headers:
        if name not in HOP_HEADERS:
            lines.append(b"%s: %s\r\n" % (name, value))
    client = (request.client or "").encode()
    lines.append(b"%s: %s\r\ncontent-length: %d\r\n\r\n" % (CLIENT_HEADER, client, len(request.body)))
    lines.append(request.body)
    return b"".join(lines)


class ForwardPool:
    """Kept-alive connections from one worker to the canary's forward socket, one request at a time
    on each."""

    def __init__(self, loop: asyncio.AbstractEventLoop, path: str):
        self.loop = loop
        self.path = path
        self.idle: deque[CanaryConnection] = deque()
        self.closed = False

    async def send(self, data: bytes) -> Response:
        while self.idle:
            connection = self.idle.pop()
            if connection.usable:
                break
        else:
            _, connection = await self.loop.create_unix_connection(lambda: CanaryConnection(self), self.path)
        return await connection.exchange(data)

    def put_back(self, connection: CanaryConnection) -> None:
        if self.closed or len(self.idle) >= MAX_IDLE:
            connection.close()
        else:
            self.idle.append(connection)

    def close(self) -> None:
        self.closed = True
        while self.idle:
            self.idle.pop().close()


class CanaryConnection(asyncio.Protocol):
    """One connection to the canary's forward socket; its answers are parsed by httptools."""

    def __init__(self, pool: ForwardPool):
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.usable = True

    def exchange(self, data: bytes) -> asyncio.Future:
        self.waiter = self.pool.loop.create_future()
        self.headers, self.body = [], []
        assert self.transport is not None
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(ForwardFailed(f"unreadable answer: {exc}"))

    def connection_lost(self, exc) -> None:
        self.fail(ForwardFailed("the canary closed the connection"))

    def fail(self, exc: Exception) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, chunk: bytes) -> None:
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        keep = self.parser.should_keep_alive()
        content_type = b"application/json"
        extra = []
        for name, value in self.headers:
            if name == b"content-type":
                content_type = value
            elif name not in ANSWER_HOP_HEADERS:
                extra.append(b"\r\n%s: %s" % (name, value))
        response = (
            status if status in STATUS_LINES else 502,
            b"".join(self.body),
            content_type + b"".join(extra),
        )
        waiter, self.waiter = self.waiter, None
        if not keep:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(response)
        if keep and self.usable:
            self.pool.put_back(self)


class ForwardedConnection(HttpConnection):
    """A connection on the canary's forward socket: the caller's address comes from the header the
    stable process set (the peer is that process), and it takes no part in the public listener's
    balancing."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.client = None

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == CLIENT_HEADER:
            self.client = value.decode("latin-1") or None
            return
        super().on_header(name, value)

    def connection_lost(self, exc) -> None:
        self.state.connections.discard(self)
        self.waiting.clear()


class Routing:
    """Which app a worker's public connections use: the app itself, or a router while a canary takes
    a share. `apply` changes it for the connections open now and those accepted later."""

    def __init__(self, app, loop: asyncio.AbstractEventLoop, state):
        self.base = app
        self.app = app
        self.loop = loop
        self.state = state
        self.router: CanaryRouter | None = None

    def apply(self, split: dict | None) -> None:
        """`split` is {"to": forward socket, "percent": 1..100}, or None (no canary)."""
        old = self.router
        percent = int((split or {}).get("percent") or 0)
        self.router = CanaryRouter(self.base, self.loop, split["to"], percent) if split and percent else None
        self.app = self.router or self.base
        for connection in self.state.connections:
            if type(connection) is HttpConnection:
                connection.app = self.app
        if old is not None:
            old.close()
