"""The application: routing, access checks and prediction responses, as one synchronous call.

`ServingApp.handle(request)` returns (status, body, content type); the protocol writes it. No
framework and no async: every answer is CPU work, so nothing would be gained by awaiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import orjson

from serving import metrics, open_inference, openapi
from serving.access import AccessControl
from serving.model import Model
from serving.protocol import Request, ServerState
from serving.validation import RequestError, Validator

log = logging.getLogger("serving.app")

JSON = b"application/json"
HTML = b"text/html; charset=utf-8"
PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"
DOCS_PAGE = Path(__file__).with_name("static") / "docs.html"
Response = tuple[int, bytes, bytes]  # status, body, content type
GET, POST = frozenset({b"GET", b"HEAD"}), frozenset({b"POST"})


@dataclass(frozen=True)
class Route:
    handler: Callable[[Request], Response]
    methods: frozenset[bytes]
    metric: int  # index into metrics.ROUTES
    checked: bool = False  # subject to the access policy


def json_response(status: int, document) -> Response:
    return status, orjson.dumps(document), JSON


def error_response(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


def query_value(query: bytes, name: str) -> str | None:
    if not query:
        return None
    return dict(parse_qsl(query.decode("latin-1"))).get(name)


class ServingApp:
    """Answers for one model in one worker process."""

    def __init__(
        self,
        model: Model,
        *,
        max_rows: int,
        max_body_bytes: int,
        access: AccessControl | None,
        recorder: metrics.Recorder,
        render_metrics: Callable[[], bytes],
        state: ServerState,
    ):
        self.model = model
        self.validator = Validator(model.names, [feature.type for feature in model.features], max_rows)
        self.access = access
        self.recorder = recorder
        self.render_metrics = render_metrics
        self.state = state
        self.inference = open_inference.InferenceRequest(self.validator)
        self.label_keys = [str(label) for label in model.labels]
        self.probability_keys = [f"{label}_probability" for label in self.label_keys]
        index = metrics.ROUTE_INDEX
        self.routes: dict[bytes, Route] = {
            b"/": Route(self.welcome, GET, index["/"]),
            b"/healthz": Route(self.healthz, GET, index["/healthz"]),
            b"/readyz": Route(self.readyz, GET, index["/readyz"]),
            b"/metrics": Route(self.metrics, GET, index["/metrics"]),
            b"/v1/model": Route(self.model_info, GET, index["/v1/model"], checked=True),
            b"/predict": Route(self.predict, POST, index["/predict"], checked=True),
            b"/openapi.json": Route(self.openapi, GET, index["/openapi.json"]),
            b"/docs": Route(self.docs, GET, index["/docs"]),
            b"/v2": Route(self.v2_server, GET, index["/v2/health"]),
            b"/v2/health/live": Route(self.v2_live, GET, index["/v2/health"]),
            b"/v2/health/ready": Route(self.v2_ready, GET, index["/v2/health"]),
        }
        # Open Inference Protocol paths name the model (and optionally its version).
        named = b"/v2/models/" + model.name.encode()
        for base in (named, named + b"/versions/" + str(model.version).encode()):
            self.routes[base] = Route(self.v2_metadata, GET, index["/v2/models/{name}"], checked=True)
            self.routes[base + b"/ready"] = Route(self.v2_model_ready, GET, index["/v2/models/{name}"])
            self.routes[base + b"/infer"] = Route(
                self.v2_infer, POST, index["/v2/models/{name}/infer"], checked=True
            )
        self.not_found = error_response(404, "Not found.")
        self.unknown_model = error_response(404, f"No such model here: this endpoint serves {model.name!r}.")
        self.openapi_response = json_response(
            200,
            openapi.build(
                model,
                max_rows=max_rows,
                max_body_bytes=max_body_bytes,
                keys_checked=access is not None,  # the policy may turn keys on at any time
            ),
        )
        self.docs_response = (200, DOCS_PAGE.read_bytes(), HTML)
        self.v2_metadata_response = json_response(200, open_inference.model_metadata(model))
        self.welcome_response = json_response(
            200,
            {
                "message": f"This endpoint serves the model {model.name}, version {model.version}.",
                "model": model.name,
                "version": model.version,
                "predict": "POST /predict",
                "docs": "/docs",
            },
        )
        self.model_response = json_response(200, self.describe_model())

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
            "backend": model.backend_name,
        }

    def handle(self, request: Request) -> Response:
        """Answer one request; never raises."""
        started = time.perf_counter()
        route = self.routes.get(request.path)
        try:
            if route is None:
                response = self.unknown_model if request.path.startswith(b"/v2/models/") else self.not_found
            elif request.method not in route.methods:
                allowed = " or ".join(sorted(method.decode() for method in route.methods))
                response = error_response(405, f"Use {allowed} here.")
            else:
                denial = (
                    self.access.check(request.client, request.api_key, request.query)
                    if route.checked and self.access
                    else None
                )
                response = error_response(denial.status, denial.message) if denial else route.handler(request)
        except RequestError as exc:
            response = json_response(exc.status, exc.body())
        except Exception:
            log.exception("Unexpected error answering %s %s", request.method, request.path)
            response = error_response(500, "The server failed to answer this request.")
        metric = route.metric if route else metrics.OTHER_ROUTE
        self.recorder.request(metric, response[0], time.perf_counter() - started)
        return response

    def count(self, path: bytes | None, status: int) -> None:
        """Count a request the protocol answered by itself (400, 408, 413)."""
        route = self.routes.get(path) if path else None
        self.recorder.status(route.metric if route else metrics.OTHER_ROUTE, status)

    def welcome(self, request: Request) -> Response:
        return self.welcome_response

    def healthz(self, request: Request) -> Response:
        return json_response(200, {"status": "alive"})

    def readyz(self, request: Request) -> Response:
        if self.state.draining:
            return json_response(503, {"status": "shutting down"})
        return json_response(200, {"status": "ready"})

    def metrics(self, request: Request) -> Response:
        return 200, self.render_metrics(), PROMETHEUS

    def model_info(self, request: Request) -> Response:
        return self.model_response

    def openapi(self, request: Request) -> Response:
        return self.openapi_response

    def docs(self, request: Request) -> Response:
        return self.docs_response

    def v2_server(self, request: Request) -> Response:
        return json_response(200, {"name": "model-endpoint-serving", "version": "2", "extensions": []})

    def v2_live(self, request: Request) -> Response:
        return json_response(200, {"live": True})

    def v2_ready(self, request: Request) -> Response:
        return json_response(503 if self.state.draining else 200, {"ready": not self.state.draining})

    def v2_model_ready(self, request: Request) -> Response:
        return json_response(200, {"name": self.model.name, "ready": True})

    def v2_metadata(self, request: Request) -> Response:
        return self.v2_metadata_response

    def v2_infer(self, request: Request) -> Response:
        self.require_json(request)
        rows, request_id, wanted = self.inference.parse(request.body)
        self.recorder.rows(len(rows))
        return json_response(200, open_inference.infer_response(self.model, rows, request_id, wanted))

    def require_json(self, request: Request) -> None:
        if request.content_type is not None and not _is_json(request.content_type):
            raise RequestError(415, "Send the body as JSON, with Content-Type: application/json.")

    def predict(self, request: Request) -> Response:
        self.require_json(request)
        parsed = self.validator.parse(request.body, query_value(request.query, "return"))
        return json_response(200, self.answer(parsed.rows, parsed.form == "named", parsed.mode))

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
        if named or len(rows) == 1:
            label, probabilities = model.row(rows if named else rows[0].tolist(), mode != "label")
            if named:
                document = (
                    {} if mode == "label" else dict(zip(self.probability_keys, probabilities, strict=True))
                )
                if mode != "probabilities":
                    document["target"] = label
                return document
            labels, probabilities = [label], [probabilities]
        elif mode == "label":
            labels = model.labels_for(rows)
        elif mode == "probabilities":
            labels, probabilities = None, model.probabilities_for(rows)
        else:
            labels, probabilities = model.both_for(rows)
        if mode == "label":
            return {"predictions": labels}
        by_label = [dict(zip(self.label_keys, row, strict=True)) for row in probabilities]
        if mode == "probabilities":
            return {"predictions": by_label}
        return {"predictions": labels, "probabilities": by_label}
