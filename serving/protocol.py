"""HTTP/1.1 connections, parsed by httptools and answered in the same event-loop callback.

Every route answers synchronously (a prediction is CPU work), so a request needs no task, no
ASGI message dicts and no per-request event: when httptools reports the message complete, the
app's answer is written at once. That halves the per-request cost of uvicorn's ASGI path.

Connection handling:
- Timeouts without a timer per request: each connection notes when it entered its phase (idle,
  reading headers, reading the body) and one sweeper per worker closes those that stay too long,
  so slow or silent clients cannot pile up.
- A drain that loses no request: on shutdown an idle keep-alive connection stays open for a short
  grace period, and a request arriving on it is answered with `Connection: close`, so the client
  reconnects (to the successor, which shares the listener) instead of racing a close.
- Bodies over the limit get a 413 as soon as the headers say so; the rest is read and dropped.
- A header section (request line and headers) over `max_header_bytes` gets a 431. It is measured
  exactly only when it could be too large (its bytes spanned reads, or the read was larger than
  the limit), so the usual request pays one comparison; a section still growing after a read is
  cut off as soon as the bytes known to belong to it pass the limit, so httptools never buffers
  much more than the limit.
- Two `x-api-key` (or two `Authorization`) headers get a 400: which one counts would otherwise be
  the server's guess.
- Malformed HTTP gets a JSON 400, like every other error.
- Answers that come later (a micro-batched prediction, see batching.py) keep their place: while one is
  awaited, the answers after it on the same connection wait in `HttpConnection.waiting`, so
  pipelined requests are always answered in order. The fast path never touches that queue.
"""

from __future__ import annotations

import asyncio
import http
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

import httptools
import orjson

DRAIN_IDLE_GRACE = 2.0
SWEEP_INTERVAL = 0.5
DRAIN_SWEEP_INTERVAL = 0.05

IDLE, HEADERS, BODY = range(3)

STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode()) for status in http.HTTPStatus
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
JSON = b"application/json"
# The app's answer: status, body, content type. The content type may be followed by further header
# lines ("\r\nname: value"), written as they are: see `with_header`.
Response = tuple[int, bytes, bytes]


def json_response(status: int, document) -> Response:
    return status, orjson.dumps(document), JSON


def with_header(response: Response, name: bytes, value: bytes) -> Response:
    """The response with one more header line, written after its content type."""
    status, body, head = response
    return status, body, b"%s\r\n%s: %s" % (head, name, value)


def error_response(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


class Request:
    """What the app sees of a request."""

    __slots__ = (
        "method",
        "path",
        "query",
        "headers",
        "client",
        "body",
        "content_type",
        "api_key",
        "authorization",
        "connection",
        "started",
        "keep_alive",
        "reply",
    )

    def __init__(self, method: bytes, path: bytes, query: bytes, connection: HttpConnection, body: bytes):
        self.connection = connection  # for an answer given later: connection.deliver(request, response)
        self.method = method
        self.path = path
        self.query = query
        self.headers = connection.headers  # [(lower-case name, value)] as bytes
        self.client = connection.client  # the TCP peer's address, never a forwarded one
        self.body = body
        self.content_type = connection.content_type
        self.api_key = connection.api_key
        self.authorization = connection.authorization


class Reply:
    """A response waiting for its turn on a connection; `data` is None until it is known."""

    __slots__ = ("data", "close")

    def __init__(self, data: bytes | None, close: bool):
        self.data = data
        self.close = close


@dataclass
class ServerState:
    """What all connections of one worker share."""

    connections: set = field(default_factory=set)
    date_header: bytes = b""
    draining: bool = False
    on_close: Callable[[], None] = lambda: None  # told when a connection ends


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    keepalive: float
    header: float
    body: float
    max_header_bytes: int = 16_384


DUPLICATE_KEY = "Send one x-api-key header: this request has several."
DUPLICATE_AUTHORIZATION = "Send one Authorization header: this request has several."


def _error_response(status: int, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    return b"%scontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (
        STATUS_LINES[status],
        len(body),
        body,
    )


class HttpConnection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, app, state: ServerState, limits: Limits, loop: asyncio.AbstractEventLoop):
        self.app = app
        self.state = state
        self.limits = limits
        self.loop = loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.client = None
        self.phase = IDLE
        self.phase_since = loop.time()
        self.draining = False
        self.url = b""
        self.headers: list = []
        self.content_type: bytes | None = None
        self.api_key: bytes | None = None
        self.authorization: bytes | None = None
        self.body: list[bytes] = []
        self.size = 0
        self.refused = False  # answered early (400, 413, 431); the rest of the message is dropped
        self.fed = 0  # size of the read being parsed
        self.spanning = False  # this message's header section began in an earlier read
        self.header_bytes = 0  # bytes of later reads that surely belong to the header section
        self.header_problem: tuple[int, str] | None = None
        self.in_message = False  # between the start and the end of a request message
        self.waiting: deque[Reply] = deque()  # answers behind one not known yet, in request order
        self.finished = False  # a closing answer is waiting its turn; later input is ignored

    # asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else None
        self.state.connections.add(self)
        if self.state.draining:
            self.shutdown()

    def connection_lost(self, exc) -> None:
        self.state.connections.discard(self)
        self.waiting.clear()
        self.state.on_close()

    def data_received(self, data: bytes) -> None:
        if self.finished:
            return
        self.fed = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(400, "Protocol upgrades are not supported.")
        except httptools.HttpParserError as exc:
            self.fail(400, f"Malformed HTTP request: {exc}")
        if self.phase == HEADERS:
            # The header section goes on past this read. A read it began in may hold the previous
            # request's end too, so only the reads after that one are counted: all theirs.
            if self.spanning:
                self.header_bytes += len(data)
                if self.header_bytes > self.limits.max_header_bytes:
                    self.fail(431, self.headers_too_large())
            else:
                self.spanning = True

    def headers_too_large(self) -> str:
        return f"The request line and headers are larger than {self.limits.max_header_bytes} bytes."

    def pause_writing(self) -> None:
        # A client that pipelines without reading its answers gets no more reads until it does.
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.transport.is_closing():
            self.transport.resume_reading()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.in_message = True
        self.phase = HEADERS
        self.phase_since = self.loop.time()
        self.url = b""
        self.headers = []
        self.content_type = None
        self.api_key = None
        self.authorization = None
        self.body = []
        self.size = 0
        self.refused = False
        self.spanning = False
        self.header_bytes = 0
        self.header_problem = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        # The headers the app reads on every request are picked out here, in one pass.
        if name == b"content-type":
            self.content_type = value
        elif name == b"x-api-key":
            if self.api_key is not None:
                self.header_problem = (400, DUPLICATE_KEY)
            self.api_key = value
        elif name == b"authorization":
            if self.authorization is not None:
                self.header_problem = (400, DUPLICATE_AUTHORIZATION)
            self.authorization = value
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.phase = BODY
        self.phase_since = self.loop.time()
        limit = self.limits.max_header_bytes
        # Within one read no larger than the limit, the header section cannot be over it.
        if (self.spanning or self.fed > limit) and len(self.url) + sum(
            len(name) + len(value) + 4 for name, value in self.headers
        ) > limit:
            self.header_problem = (431, self.headers_too_large())
        length, expects_continue = 0, False
        for name, value in self.headers:
            if name == b"content-length":
                length = int(value)  # httptools has checked it is a number
            elif name == b"expect":
                expects_continue = value.lower() == b"100-continue"
        if self.header_problem is not None:
            self.refuse(*self.header_problem)
        elif length > self.limits.max_body_bytes:
            self.refuse_body()
        elif expects_continue and not self.finished:
            self.send(CONTINUE, False)

    def on_body(self, chunk: bytes) -> None:
        if self.refused:
            return
        self.size += len(chunk)
        if self.size > self.limits.max_body_bytes:
            self.body = []
            self.refuse_body()
        else:
            self.body.append(chunk)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.refused:
            self.send(b"", True)
            return
        if self.finished:
            return
        parsed = httptools.parse_url(self.url)
        path = parsed.path
        if b"%" in path:
            path = unquote_to_bytes(path)
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        request = Request(self.parser.get_method(), path, parsed.query or b"", self, body)
        response = self.app.handle(request)
        keep_alive = self.parser.should_keep_alive() and not self.draining
        if response is None:
            # The app answers later, never from inside handle(): deliver() finds the reply queued.
            request.keep_alive = keep_alive
            request.reply = Reply(None, not keep_alive)
            self.waiting.append(request.reply)
            if not keep_alive:
                self.finished = True
            return
        data = self.render(response, keep_alive, request.method == b"HEAD")
        if self.waiting:
            self.send(data, not keep_alive)
            return
        self.transport.write(data)
        if keep_alive:
            self.phase = IDLE
            self.phase_since = self.loop.time()
        else:
            self.transport.close()

    def render(self, response: Response, keep_alive: bool, head: bool) -> bytes:
        status, payload, content_type = response
        return b"".join(
            (
                STATUS_LINES[status],
                b"content-type: ",
                content_type,
                b"\r\ncontent-length: %d\r\n" % len(payload),
                self.state.date_header,
                b"\r\n" if keep_alive else b"connection: close\r\n\r\n",
                b"" if head else payload,
            )
        )

    # Answers given later, and the order of answers

    def deliver(self, request: Request, response: Response) -> None:
        """The app's answer to a request it took to answer later (handle() returned None)."""
        request.reply.data = self.render(response, request.keep_alive, request.method == b"HEAD")
        self.write_waiting()

    def send(self, data: bytes, close: bool) -> None:
        """Write `data` (then close, if asked) once every answer before it is written."""
        if not self.waiting:
            if data:
                self.transport.write(data)
            if close:
                self.transport.close()
            return
        self.waiting.append(Reply(data, close))
        if close:
            self.finished = True

    def write_waiting(self) -> None:
        """Write the waiting answers that are known, in order, up to the first still awaited."""
        waiting, transport = self.waiting, self.transport
        while waiting and waiting[0].data is not None:
            reply = waiting.popleft()
            if transport.is_closing():
                waiting.clear()
                return
            if reply.data:
                transport.write(reply.data)
            if reply.close:
                transport.close()
                waiting.clear()
                return
        if not waiting and not self.in_message and not transport.is_closing():
            self.phase = IDLE
            self.phase_since = self.loop.time()

    # Errors, timeouts and draining

    def refuse_body(self) -> None:
        self.refuse(413, f"The body is larger than {self.limits.max_body_bytes} bytes.")

    def refuse(self, status: int, message: str) -> None:
        """Answer now; the rest of the message is read and dropped, then the connection closes."""
        self.refused = True
        self.send(_error_response(status, message), False)
        try:
            path = httptools.parse_url(self.url).path
        except httptools.HttpParserInvalidURLError:
            path = None
        self.app.count(path, status, method=self.parser.get_method(), reason=message, client=self.client)

    def fail(self, status: int, message: str) -> None:
        if not self.transport.is_closing() and not self.finished:
            if not self.refused:
                self.send(_error_response(status, message), True)
                self.app.count(None, status, reason=message, client=self.client)
            else:
                self.send(b"", True)

    def shutdown(self) -> None:
        """Start draining: answer at most the request under way, then close."""
        self.draining = True
        if self.phase == IDLE:
            self.phase_since = max(self.phase_since, self.loop.time())

    def sweep(self, now: float, limits: tuple[float, float, float]) -> None:
        """Close the connection if it has been in its phase for longer than allowed."""
        if self.transport.is_closing() or now - self.phase_since <= limits[self.phase]:
            return
        if self.phase == IDLE:
            self.transport.close()
        else:
            self.fail(408, "The request took too long to arrive.")


async def sweep_connections(state: ServerState, limits: Limits) -> None:
    """Enforce the idle, header and body timeouts (and the drain grace) for one worker's connections."""
    loop = asyncio.get_running_loop()
    normal = (limits.keepalive, limits.header, limits.body)
    draining = (min(limits.keepalive, DRAIN_IDLE_GRACE), limits.header, limits.body)
    while True:
        await asyncio.sleep(DRAIN_SWEEP_INTERVAL if state.draining else SWEEP_INTERVAL)
        now = loop.time()
        for connection in list(state.connections):
            connection.sweep(now, draining if connection.draining else normal)
