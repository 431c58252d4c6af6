"""The application: routing, access checks and prediction responses, as one synchronous call.

`ServingApp.handle(request)` returns (status, body, content type); the protocol writes it. No
framework and no async: every answer is CPU work, so nothing would be gained by awaiting.

Micro-batching (SERVING_MICROBATCH=on) is the one exception: a one-row /predict request may be
queued for a batch (see batching.py), and handle() then returns None.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from serving import binary_tensors, metrics, open_inference, openapi
from serving.access import AccessControl
from serving.batching import MicroBatch, MicroBatcher, Queued
from serving.model import HUGE, Model, NonFiniteAnswer
from serving.protocol import Request, Response, ServerState, error_response, json_response, with_header
from serving.request_log import RequestLog, reason_of
from serving.validation import RETURN_MODES, RequestError, Validator, invalid

log = logging.getLogger("serving.app")

HTML = b"text/html; charset=utf-8"
PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"
DOCS_PAGE = Path(__file__).with_name("static") / "docs.html"
GET, POST = frozenset({b"GET", b"HEAD"}), frozenset({b"POST"})


@dataclass(frozen=True)
class Route:
    handler: Callable[[Request], Response]
    methods: frozenset[bytes]
    metric: int  # index into metrics.ROUTES
    checked: bool = False  # subject to the access policy


def _huge_value(value) -> bool:
    return isinstance(value, float | int) and abs(value) >= HUGE


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


def _is_binary(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == binary_tensors.OCTET_STREAM or _is_json(content_type)


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
        microbatch: MicroBatch | None = None,
        request_log: RequestLog | None = None,
    ):
        self.model = model
        self.request_log = request_log or RequestLog(
            model=model.name, version=model.version, revision=None, sample=0.0, refused_per_second=1000
        )
        # Micro-batching joins float64 rows; a table model takes each request as it comes.
        batching = microbatch is not None and microbatch.max_rows > 1 and model.plain
        self.batcher = MicroBatcher(microbatch, self) if batching else None
        self.validator = Validator(model.features, max_rows)
        self.access = access
        self.recorder = recorder
        self.render_metrics = render_metrics
        self.state = state
        self.inference = open_inference.InferenceRequest(self.validator)
        self.answers = open_inference.InferenceAnswers(model)
        self.label_keys = [str(label) for label in model.labels]
        self.probability_keys = [f"{label}_probability" for label in self.label_keys]
        index = metrics.ROUTE_INDEX
        self.predict_metric = index["/predict"]
        # With an access file, everything that says what is served, or how much, is checked too:
        # the model's name and version (/, /openapi.json, /docs) and its traffic (/metrics; the
        # portal reads it through the control socket). Health and readiness checks stay open
        # (/v2/models/{name}/ready too: it tells only a caller who knows the name).
        self.routes: dict[bytes, Route] = {
            b"/": Route(self.welcome, GET, index["/"], checked=True),
            b"/healthz": Route(self.healthz, GET, index["/healthz"]),
            b"/readyz": Route(self.readyz, GET, index["/readyz"]),
            b"/metrics": Route(self.metrics, GET, index["/metrics"], checked=True),
            b"/v1/model": Route(self.model_info, GET, index["/v1/model"], checked=True),
            b"/predict": Route(self.predict, POST, index["/predict"], checked=True),
            b"/openapi.json": Route(self.openapi, GET, index["/openapi.json"], checked=True),
            b"/docs": Route(self.docs, GET, index["/docs"], checked=True),
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
        # The policy may turn keys (or bearer tokens) on at any time: both documents are ready.
        self.openapi_response, self.openapi_bearer_response = (
            json_response(
                200,
                openapi.build(
                    model,
                    max_rows=max_rows,
                    max_body_bytes=max_body_bytes,
                    keys_checked=access is not None,
                    bearer=bearer,
                ),
            )
            for bearer in (False, True)
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
            "schema": [feature.as_json() for feature in model.features],
            "classes": model.classes,
            "labels": model.labels,
            "label_map": model.meta.label_map,
            "probabilities": model.has_proba,
            "backend": model.backend_name,
        }

    def handle(self, request: Request) -> Response | None:
        """Answer one request, or None when it is queued for a micro-batch; never raises."""
        started = time.perf_counter()
        request.started = started
        route = self.routes.get(request.path)
        try:
            if route is None:
                response = self.not_found
                if request.path.startswith(b"/v2/models/"):
                    # Saying which model is served is for callers the policy lets in.
                    denial = (
                        self.access.check(
                            request.client, request.api_key, request.query, request.authorization
                        )
                        if self.access
                        else None
                    )
                    response = denial.response() if denial else self.unknown_model
            elif request.method not in route.methods:
                allowed = sorted(method.decode() for method in route.methods)
                response = with_header(
                    error_response(405, f"Use {' or '.join(allowed)} here."),
                    b"allow",
                    ", ".join(allowed).encode(),
                )
            else:
                denial = (
                    self.access.check(request.client, request.api_key, request.query, request.authorization)
                    if route.checked and self.access
                    else None
                )
                response = denial.response() if denial else route.handler(request)
        except RequestError as exc:
            response = json_response(exc.status, exc.body())
        except Exception:
            log.exception("Unexpected error answering %s %s", request.method, request.path)
            response = error_response(500, "The server failed to answer this request.")
        if response is None:
            return None  # counted when answered
        metric = route.metric if route else metrics.OTHER_ROUTE
        seconds = time.perf_counter() - started
        status = response[0]
        self.recorder.request(metric, status, seconds)
        request_log = self.request_log
        if status >= 400:
            request_log.refused(
                request.method, request.path, status, reason_of(response[1]), seconds, request.client
            )
        else:
            # A success is logged when the countdown runs out (see request_log.py): the fast path
            # pays a decrement and a test.
            request_log.countdown -= 1
            if request_log.countdown <= 0:
                request_log.success(request.method, request.path, status, seconds, request.client)
        return response

    def log_answer(self, request: Request, status: int, body: bytes, seconds: float) -> None:
        """Log an answer given later (a micro-batched prediction) as handle() logs its own."""
        request_log = self.request_log
        if status >= 400:
            request_log.refused(
                request.method, request.path, status, reason_of(body), seconds, request.client
            )
        else:
            request_log.countdown -= 1
            if request_log.countdown <= 0:
                request_log.success(request.method, request.path, status, seconds, request.client)

    def count(
        self,
        path: bytes | None,
        status: int,
        *,
        method: bytes | None = None,
        reason: str = "",
        client: str | None = None,
    ) -> None:
        """Count (and log) a request the protocol refused by itself (400, 408, 413, 431)."""
        route = self.routes.get(path) if path else None
        self.recorder.status(route.metric if route else metrics.OTHER_ROUTE, status)
        self.request_log.refused(method, path, status, reason, None, client)

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
        if self.access is not None and self.access.verifier is not None:
            return self.openapi_bearer_response
        return self.openapi_response

    def docs(self, request: Request) -> Response:
        return self.docs_response

    def v2_server(self, request: Request) -> Response:
        return json_response(
            200, {"name": "model-endpoint-serving", "version": "2", "extensions": ["binary_tensor_data"]}
        )

    def v2_live(self, request: Request) -> Response:
        return json_response(200, {"live": True})

    def v2_ready(self, request: Request) -> Response:
        return json_response(503 if self.state.draining else 200, {"ready": not self.state.draining})

    def v2_model_ready(self, request: Request) -> Response:
        return json_response(200, {"name": self.model.name, "ready": True})

    def v2_metadata(self, request: Request) -> Response:
        return self.v2_metadata_response

    def v2_infer(self, request: Request) -> Response:
        header_length = binary_tensors.header_length(request.headers)
        if header_length is None:
            self.require_json(request)
        elif request.content_type is not None and not _is_binary(request.content_type):
            raise RequestError(
                415,
                "Send binary tensors with Content-Type: application/octet-stream "
                "(the body is JSON, then the tensors' bytes).",
            )
        inference = self.inference.parse(request.body, header_length)
        self.recorder.rows(len(inference.rows))
        try:
            return self.answers.response(inference)
        except NonFiniteAnswer as exc:
            raise self.too_large("rows", inference.rows, exc.rows) from None

    def require_json(self, request: Request) -> None:
        if request.content_type is not None and not _is_json(request.content_type):
            raise RequestError(415, "Send the body as JSON, with Content-Type: application/json.")

    def predict(self, request: Request) -> Response | None:
        self.require_json(request)
        query_mode = query_value(request.query, "return")
        if query_mode is not None and query_mode not in RETURN_MODES:
            raise invalid({"return": f"expected one of {', '.join(RETURN_MODES)}"})
        parsed = self.validator.parse(request.body, query_mode)
        named = parsed.form == "named"
        # With one connection open in this worker there is nobody to batch with: answer at once.
        if self.batcher is not None and (named or len(parsed.rows) == 1) and len(self.state.connections) > 1:
            mode = self.return_mode(named, parsed.mode)
            self.batcher.add(
                Queued(request, parsed.rows if named else parsed.rows[0].tolist(), parsed.form, mode)
            )
            return None
        try:
            return json_response(200, self.answer(parsed.rows, named, parsed.mode))
        except NonFiniteAnswer as exc:
            raise self.too_large(parsed.form, parsed.rows if not named else [parsed.rows], exc.rows) from None

    def too_large(self, key: str, rows, bad: list[int]) -> RequestError:
        """The 422 for rows the model gives no finite answer for, naming them and their huge values."""
        reason = "too large for this model: its answer is not a finite number"
        names = self.model.names
        if key == "named":
            huge = [name for name, value in zip(names, rows[0], strict=True) if _huge_value(value)]
            return invalid(dict.fromkeys(huge or names, reason))
        fields = {}
        for index in bad:
            huge = [name for name, value in zip(names, rows[index], strict=True) if _huge_value(value)]
            fields[f"{key}/{index}"] = f"{reason} ({', '.join(huge or names)})"
        return invalid(fields)

    def return_mode(self, named: bool, mode: str | None) -> str:
        """The `return` mode to use, or a 422 when the model cannot give it."""
        model = self.model
        if mode is None:
            return "both" if named and model.has_proba else "label"
        if mode != "label" and not model.has_proba:
            reason = (
                "this classifier does not give probabilities"
                if model.is_classifier
                else "this model is a regressor: it predicts values, not probabilities"
            )
            raise RequestError(422, f"Cannot return {mode}: {reason}.", {"return": reason})
        return mode

    def one_row_document(self, label, probabilities, named: bool, mode: str) -> dict:
        """The prediction document for one row given as named features or as a batch of one."""
        if named:
            document = {} if mode == "label" else dict(zip(self.probability_keys, probabilities, strict=True))
            if mode != "probabilities":
                document["target"] = label
            return document
        if mode == "label":
            return {"predictions": [label]}
        by_label = [dict(zip(self.label_keys, probabilities, strict=True))]
        if mode == "probabilities":
            return {"predictions": by_label}
        return {"predictions": [label], "probabilities": by_label}

    def answer(self, rows, named: bool, mode: str | None) -> dict:
        """The prediction document for validated rows, shaped by form and `return` mode."""
        model = self.model
        mode = self.return_mode(named, mode)
        self.recorder.rows(1 if named else len(rows))  # a named row is a list of feature values
        if named or len(rows) == 1:
            label, probabilities = model.row(rows if named else rows[0].tolist(), mode != "label")
            return self.one_row_document(label, probabilities, named, mode)
        if mode == "label":
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
