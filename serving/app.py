"""The ASGI application: routing, access checks, body limits and prediction responses.

A plain ASGI callable rather than a framework: every request is a dict lookup for the route, one
header scan, orjson in and out, and a direct call into the model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson

from serving import metrics
from serving.access import AccessControl
from serving.model import Model
from serving.validation import RequestError, Validator

log = logging.getLogger("serving.app")

JSON = b"application/json"
PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"
Response = tuple[int, bytes, bytes]  # status, body, content type


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


@dataclass(frozen=True)
class Route:
    handler: Callable[..., Awaitable[Response]]
    methods: frozenset[str]
    metric: int  # index into metrics.ROUTES
    checked: bool = False  # subject to the access policy


def _json(status: int, document) -> Response:
    return status, orjson.dumps(document), JSON


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


class ServingApp:
    """Answers for one model in one worker process."""

    def __init__(
        self,
        model: Model,
        *,
        max_body_bytes: int,
        max_rows: int,
        access: AccessControl | None,
        recorder: metrics.Recorder,
        render_metrics: Callable[[], bytes],
    ):
        self.model = model
        self.max_body_bytes = max_body_bytes
        self.validator = Validator(model.names, [feature.type for feature in model.features], max_rows)
        self.access = access
        self.recorder = recorder
        self.render_metrics = render_metrics
        self.draining = False
        self.label_keys = [str(label) for label in model.labels]
        self.probability_keys = [f"{label}_probability" for label in self.label_keys]
        get, post = frozenset({"GET", "HEAD"}), frozenset({"POST"})
        index = metrics.ROUTE_INDEX
        self.routes = {
            "/": Route(self.welcome, get, index["/"]),
            "/healthz": Route(self.healthz, get, index["/healthz"]),
            "/readyz": Route(self.readyz, get, index["/readyz"]),
            "/metrics": Route(self.metrics, get, index["/metrics"]),
            "/v1/model": Route(self.model_info, get, index["/v1/model"], checked=True),
            "/predict": Route(self.predict, post, index["/predict"], checked=True),
        }
        self.not_found = _error(404, "Not found.")
        self.welcome_response = _json(
            200,
            {
                "message": f"This endpoint serves the model {model.name}, version {model.version}.",
                "model": model.name,
                "version": model.version,
                "predict": "POST /predict",
                "docs": "/docs",
            },
        )
        self.model_response = _json(200, self.describe_model())

    def describe_model(self) -> dict:
        model = self.model
        return {
            "name": model.name,
            "version": model.version,
            "sha256": model.sha256,
            "format": model.meta.format,
            "task": "classification" if model.is_classifier else "regression",
            "schema": [{"name": feature.name, "type": feature.type} for feature in model.features],
            "classes": model.classes,
            "labels": model.labels,
            "label_map": model.meta.label_map,
            "probabilities": model.has_proba,
            "backend": model.backend.name,
        }

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        route = self.routes.get(scope["path"])
        metric = route.metric if route else metrics.ROUTE_INDEX["other"]
        try:
            if route is None:
                status, body, content_type = self.not_found
            elif scope["method"] not in route.methods:
                status, body, content_type = _error(405, f"Use {' or '.join(sorted(route.methods))} here.")
            else:
                denial = self.access.check(scope) if route.checked and self.access else None
                if denial:
                    status, body, content_type = _error(denial.status, denial.message)
                else:
                    status, body, content_type = await route.handler(scope, receive)
        except RequestError as exc:
            status, body, content_type = _json(exc.status, exc.body())
        except ClientGone:
            return
        except Exception:
            log.exception("Unexpected error answering %s %s", scope["method"], scope["path"])
            status, body, content_type = _error(500, "The server failed to answer this request.")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self.recorder.request(metric, status, time.perf_counter() - started)

    async def welcome(self, scope, receive) -> Response:
        return self.welcome_response

    async def healthz(self, scope, receive) -> Response:
        return _json(200, {"status": "alive"})

    async def readyz(self, scope, receive) -> Response:
        if self.draining:
            return _json(503, {"status": "shutting down"})
        return _json(200, {"status": "ready"})

    async def metrics(self, scope, receive) -> Response:
        return 200, self.render_metrics(), PROMETHEUS

    async def model_info(self, scope, receive) -> Response:
        return self.model_response

    async def read_json_body(self, scope, receive) -> bytes:
        """The request body, after checking its content type and size."""
        content_type = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                raise RequestError(413, f"The body is larger than {self.max_body_bytes} bytes.")
        if content_type is not None and not _is_json(content_type):
            raise RequestError(415, "Send the body as JSON, with Content-Type: application/json.")
        message = await receive()
        body = message.get("body", b"")
        while message.get("more_body", False):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                raise RequestError(413, f"The body is larger than {self.max_body_bytes} bytes.")
        if message["type"] == "http.disconnect":
            raise ClientGone
        return body

    async def predict(self, scope, receive) -> Response:
        body = await self.read_json_body(scope, receive)
        query_mode = None
        if scope["query_string"]:
            query_mode = dict(parse_qsl(scope["query_string"].decode("latin-1"))).get("return")
        parsed = self.validator.parse(body, query_mode)
        return _json(200, self.answer(parsed.rows, parsed.form == "named", parsed.mode))

    def answer(self, rows, named: bool, mode: str | None) -> dict:
        """The prediction document for validated rows, shaped by form and `return` mode."""
        model = self.model
        if mode is None:
            mode = "both" if named and model.has_proba else "label"
        elif mode != "label" and not model.has_proba:
            reason = (
                "this classifier does not give probabilities"
                if model.is_classifier
                else "this model is a regressor: it predicts values, not probabilities"
            )
            raise RequestError(422, f"Cannot return {mode}: {reason}.", {"return": reason})
        self.recorder.rows(len(rows))
        if mode == "label":
            labels = model.labels_for(rows)
            return {"target": labels[0]} if named else {"predictions": labels}
        if mode == "probabilities":
            probabilities = model.probabilities_for(rows)
            if named:
                return dict(zip(self.probability_keys, probabilities[0], strict=True))
            return {"predictions": [dict(zip(self.label_keys, row, strict=True)) for row in probabilities]}
        labels, probabilities = model.both_for(rows)
        if named:
            document = dict(zip(self.probability_keys, probabilities[0], strict=True))
            document["target"] = labels[0]
            return document
        return {
            "predictions": labels,
            "probabilities": [dict(zip(self.label_keys, row, strict=True)) for row in probabilities],
        }
