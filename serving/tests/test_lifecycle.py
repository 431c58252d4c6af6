"""Start, hand over the listener, and stop: no request may fail or be cut short on the way."""

import signal
import socket
import threading
import time
from dataclasses import dataclass

import httpx
import orjson
import pytest

from serving.tests.support import SETOSA, Server, free_port, stop_all


def hammer(url: str, stop: threading.Event, outcomes: list, keep_alive: bool) -> None:
    """Post predictions until told to stop, noting each status code or error."""
    headers = {} if keep_alive else {"connection": "close"}
    with httpx.Client(timeout=10, headers=headers) as client:
        while not stop.is_set():
            try:
                outcomes.append(client.post(f"{url}/predict", json=SETOSA).status_code)
            except httpx.HTTPError as exc:
                outcomes.append(repr(exc))
            time.sleep(0.002)  # leave CPU for the successor's start on a small machine


@dataclass
class Swap:
    """What the handoff fixture saw: the successor still serving, and every hammer outcome."""

    new: Server
    port: int
    outcomes: dict
    before_stop: dict
    status_before_serve: dict
    refused_before_serve: bool


@pytest.fixture(scope="module")
def swap(iris_env, tmp_path_factory) -> Swap:
    """A (2 workers) serves; B takes A's listener and serves; A gets SIGTERM; clients hammer throughout.

    A is pointed at a predecessor that does not exist, so it binds the port itself. The test
    below checks the outcomes; the drain test then uses B.
    """
    directory = tmp_path_factory.mktemp("swap")
    port = free_port()
    old_socket, new_socket = str(directory / "old.sock"), str(directory / "new.sock")
    old_env = {
        **iris_env,
        "SERVING_CONTROL_SOCKET": old_socket,
        "SERVING_HANDOFF_FROM": str(directory / "nobody.sock"),
        "SERVING_WORKERS": "2",
    }
    old = Server(old_env, directory / "old.log", port=port).wait_ready()
    new = None
    try:
        status_before_serve = old.command("status")
        try:  # the listener exists, but nobody accepts before "serve"
            httpx.get(f"{old.url}/healthz", timeout=0.5)
            refused_before_serve = False
        except httpx.ReadTimeout:
            refused_before_serve = True
        assert old.command("serve") == {"ok": True, "serving": True}
        stop, outcomes = threading.Event(), {"fresh": [], "kept": []}
        threads = [
            threading.Thread(target=hammer, args=(old.url, stop, outcomes["fresh"], False)),
            threading.Thread(target=hammer, args=(old.url, stop, outcomes["kept"], True)),
        ]
        for thread in threads:
            thread.start()
        try:
            new_env = {**iris_env, "SERVING_CONTROL_SOCKET": new_socket, "SERVING_HANDOFF_FROM": old_socket}
            new = Server(new_env, directory / "new.log", port=port).wait_ready()
            assert new.command("status")["port"] == port
            assert new.command("serve") == {"ok": True, "serving": True}
            before_stop = {kind: len(seen) for kind, seen in outcomes.items()}
            assert old.terminate() == 0
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        yield Swap(new, port, outcomes, before_stop, status_before_serve, refused_before_serve)
    finally:
        stop_all([server for server in (old, new) if server is not None])


def test_a_server_with_a_control_socket_waits_for_serve(swap):
    assert swap.status_before_serve["ready"] is True
    assert swap.status_before_serve["serving"] is False
    assert swap.status_before_serve["port"] == swap.port
    assert swap.refused_before_serve


def test_a_handoff_shares_the_listener_without_a_single_failed_request(swap):
    for kind, seen in swap.outcomes.items():
        assert seen and set(seen) == {200}, f"{kind}: {[outcome for outcome in seen if outcome != 200][:5]}"
        assert len(seen) > swap.before_stop[kind], f"{kind}: no request after the old server stopped"
    assert "Sharing the listening socket" in swap.new.output()
    assert httpx.get(f"{swap.new.url}/healthz").status_code == 200
    assert swap.new.command("status") == {
        "pid": swap.new.process.pid,
        "ready": True,
        "serving": True,
        "port": swap.port,
    }


def read_response(conn: socket.socket) -> bytes:
    """One whole HTTP response (headers and Content-Length body) from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = int(next(line for line in lines if line.startswith(b"content-length")).split(b":")[1])
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def request(body: bytes) -> bytes:
    return (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body


def test_sigterm_finishes_in_flight_requests_and_closes_idle_connections(swap):
    server = swap.new
    body = orjson.dumps({"inputs": [list(SETOSA.values())] * 5})
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=9)
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=9)
    later = socket.create_connection(("127.0.0.1", server.port), timeout=9)
    idle.sendall(request(body))
    later.sendall(request(body))
    assert read_response(idle).startswith(b"HTTP/1.1 200")
    assert read_response(later).startswith(b"HTTP/1.1 200")
    slow.sendall(request(body)[:-10])  # the request is in flight: its body is still arriving
    time.sleep(0.2)

    stopping_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    slow.sendall(body[-10:])
    answer = read_response(slow)
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in answer.lower()
    assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"predictions": ["setosa"] * 5}
    # A request on a kept-alive connection during the drain is answered, then the connection closes.
    later.sendall(request(body))
    answer = read_response(later)
    assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" in answer.lower()
    assert later.recv(10) == b""
    # A connection that stays idle is closed by the server.
    assert idle.recv(10) == b""
    assert server.exit_code(timeout=9) == 0
    assert time.monotonic() - stopping_at < 9
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz")
    for conn in (slow, idle, later):
        conn.close()


def test_a_server_never_told_to_serve_exits_on_its_own(iris_env, tmp_path):
    env = {
        **iris_env,
        "SERVING_CONTROL_SOCKET": str(tmp_path / "orphan.sock"),
        "SERVING_SERVE_WITHIN_SECONDS": "1",
    }
    server = Server(env, tmp_path / "orphan.log", port=free_port()).wait_ready()
    try:
        assert server.exit_code(timeout=30) == 0
        assert "Not told to serve within 1s of starting; exiting." in server.output()
    finally:
        stop_all([server])
