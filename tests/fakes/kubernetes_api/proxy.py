"""kube-proxy for live pods: a loopback port per Service that forwards each connection to one of
the Service's Ready pods (the pods its selector matches, in turn), as a ClusterIP does.

A connection when no pod is Ready is closed at once (a real Service with no endpoints refuses it).
Only the Service's first port is forwarded, to the port the pod's process listens on.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from typing import TYPE_CHECKING

from tests.fakes.kubernetes_api.kubelet import pod_ready
from tests.fakes.kubernetes_api.selectors import label_selector

if TYPE_CHECKING:
    from tests.fakes.kubernetes_api.processes import LiveKubelet

CHUNK = 65536


class ServiceProxy:
    def __init__(self, live: LiveKubelet):
        self.live = live
        self.cluster = live.cluster
        self.listeners: dict[tuple[str, str], socket.socket] = {}  # (namespace, service) -> its socket
        self.turns = itertools.count()

    def url(self, namespace: str, name: str) -> str:
        """Where the Service answers on loopback (its listener starts on first use)."""
        key = (namespace, name)
        if key not in self.listeners:
            listener = socket.create_server(("127.0.0.1", 0))
            self.listeners[key] = listener
            threading.Thread(target=self._accept, args=(listener, key), daemon=True).start()
        return f"http://127.0.0.1:{self.listeners[key].getsockname()[1]}"

    def stop_all(self) -> None:
        for listener in self.listeners.values():
            listener.close()
        self.listeners.clear()

    def _endpoint(self, key: tuple[str, str]) -> int | None:
        """The port of the next Ready pod behind the Service, or None."""
        with self.cluster.lock:
            service = self.cluster.objects.get(("Service", *key))
            if service is None:
                return None
            matches = label_selector(
                ",".join(f"{k}={v}" for k, v in (service["spec"].get("selector") or {}).items())
            )
            ports = [
                self.live.processes[pod["metadata"]["uid"]].port
                for pod in self.cluster.find("Pod", key[0])
                if matches(pod) and pod_ready(pod) and pod["metadata"]["uid"] in self.live.processes
            ]
        return ports[next(self.turns) % len(ports)] if ports else None

    def _accept(self, listener: socket.socket, key: tuple[str, str]) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by stop_all
            port = self._endpoint(key)
            if port is None:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", port))
            except OSError:
                client.close()
                continue
            threading.Thread(target=_session, args=(client, upstream), daemon=True).start()


def _session(client: socket.socket, upstream: socket.socket) -> None:
    """Carry bytes both ways until both sides are done, then close both."""
    back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
    back.start()
    _pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            target.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)
