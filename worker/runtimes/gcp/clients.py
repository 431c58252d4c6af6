"""Google API clients, built lazily in the process that uses them, and the one way to call them.

gRPC channels do not survive a fork, so nothing here is built at import or in `GcpRuntime()`:
each client is made on first use and remembered for the current process id only (a Celery
prefork child that inherited a parent's cache builds its own). Production clients use
Application Default Credentials and Google's endpoints; `GCP_API_ENDPOINT_OVERRIDES` may name a
regional endpoint, or a fake server: `insecure://host:port` (gRPC) or `http://host:port` (REST),
which the tests use, with anonymous credentials.

    ctx = Context(GcpConfig.from_settings())
    service = ctx.call(ctx.clients.run().get_service, name=..., what="Read the Cloud Run service")

`Context.call` passes an explicit timeout (and no library retry) to every call, retries with
backoff and jitter only the errors that can pass, and raises the runtime's own errors.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from worker.runtimes.base import TransientError
from worker.runtimes.gcp.config import APIS, GcpConfig
from worker.runtimes.gcp.errors import RETRYABLE, translate

INSECURE = "insecure://"
PLAIN_HTTP = "http://"


class Clients:
    def __init__(self, cfg: GcpConfig):
        self.cfg = cfg
        self._pid: int | None = None
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _get(self, key: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            if self._pid != os.getpid():
                self._cache = {}
                self._pid = os.getpid()
            if key not in self._cache:
                self._cache[key] = build()
            return self._cache[key]

    def _grpc(self, api: str, client_cls):
        endpoint = self.cfg.endpoint_overrides.get(api)
        if endpoint and endpoint.startswith(INSECURE):
            import grpc

            channel = grpc.insecure_channel(endpoint.removeprefix(INSECURE))
            return client_cls(transport=client_cls.get_transport_class("grpc")(channel=channel))
        return client_cls(client_options={"api_endpoint": endpoint} if endpoint else None)

    @property
    def anonymous(self) -> bool:
        """Every API points at a plain-text endpoint (fake servers): no credentials are used."""
        return all(
            self.cfg.endpoint_overrides.get(api, "").startswith((INSECURE, PLAIN_HTTP)) for api in APIS
        )

    def _rest(self, api: str, client_cls, **kwargs):
        endpoint = self.cfg.endpoint_overrides.get(api)
        if endpoint and endpoint.startswith(PLAIN_HTTP):
            from google.auth.credentials import AnonymousCredentials

            kwargs["credentials"] = AnonymousCredentials()
        if endpoint:
            kwargs["client_options"] = {"api_endpoint": endpoint}
        return client_cls(**kwargs)

    def run(self):
        from google.cloud import run_v2

        return self._get("run", lambda: self._grpc("run", run_v2.ServicesClient))

    def revisions(self):
        from google.cloud import run_v2

        return self._get("revisions", lambda: self._grpc("run", run_v2.RevisionsClient))

    def gateway(self):
        from google.cloud import apigateway_v1

        return self._get(
            "apigateway", lambda: self._grpc("apigateway", apigateway_v1.ApiGatewayServiceClient)
        )

    def keys(self):
        from google.cloud import api_keys_v2

        return self._get("apikeys", lambda: self._grpc("apikeys", api_keys_v2.ApiKeysClient))

    def usage(self):
        from google.cloud import service_usage_v1

        return self._get(
            "serviceusage", lambda: self._grpc("serviceusage", service_usage_v1.ServiceUsageClient)
        )

    def iam_admin(self):
        from google.cloud import iam_admin_v1

        return self._get("iam", lambda: self._grpc("iam", iam_admin_v1.IAMClient))

    def logging(self):
        from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

        return self._get("logging", lambda: self._grpc("logging", LoggingServiceV2Client))

    def monitoring(self):
        from google.cloud import monitoring_v3

        return self._get("monitoring", lambda: self._grpc("monitoring", monitoring_v3.MetricServiceClient))

    def compute(self, name: str):
        """A compute_v1 client by class name, e.g. `compute("SecurityPoliciesClient")` (REST only)."""
        from google.cloud import compute_v1

        return self._get(f"compute.{name}", lambda: self._rest("compute", getattr(compute_v1, name)))

    def projects(self):
        """Cloud Resource Manager v3 (REST): testIamPermissions on the project."""
        from worker.runtimes.gcp.projects import ProjectsClient

        return self._get("resourcemanager", lambda: self._rest("resourcemanager", ProjectsClient))

    def storage(self):
        # The storage client otherwise fetches each bucket's metadata in a background thread,
        # only to label tracing spans: an extra call (and permission) per bucket that we never use.
        os.environ.setdefault("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")
        from google.cloud import storage

        return self._get("storage", lambda: self._rest("storage", storage.Client, project=self.cfg.project))


class Context:
    """What every step shares: settings, clients, and the clock (injected by tests and the benchmark)."""

    def __init__(
        self,
        cfg: GcpConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.cfg = cfg
        self.clients = Clients(cfg)
        self._sleep = sleep
        self.clock = clock
        self.wall = wall
        self.slept = 0.0  # seconds spent waiting on purpose (backoff, polling)
        self.ready_until = -math.inf  # until when the project is known ready (see doctor.require_ready)

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self._sleep(seconds)

    def backoff(self, attempt: int) -> float:
        """Full jitter: a random wait up to initial * 2**(attempt-1), capped at 30 s."""
        return random.uniform(0.5, 1.0) * min(30.0, self.cfg.retry_initial * 2 ** (attempt - 1))

    def call(self, fn: Callable, *args, what: str, accept: tuple = (), **kwargs):
        """Call `fn` with an explicit timeout; retry what can pass; return None for `accept`ed errors."""
        kwargs.setdefault("timeout", self.cfg.call_timeout)
        kwargs.setdefault("retry", None)
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn(*args, **kwargs)
            except accept:
                return None
            except Exception as exc:
                failure = translate(exc, what, rate_limit_wait=self.cfg.rate_limit_wait)
                if (
                    isinstance(failure, TransientError)
                    and isinstance(exc, RETRYABLE)
                    and attempt < self.cfg.retry_attempts
                ):
                    self.sleep(self.backoff(attempt))
                    continue
                raise failure from exc
