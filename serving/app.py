"""The application: routing, access checks and prediction responses, as one synchronous call.

`ServingApp.handle(request)` returns (status, body, content type); the protocol writes it. No
framework and no async: every answer is CPU work, so nothing would be gained by awaiting.

Micro-batching (SERVING_MICROBATCH=on) is the one exception. A one-row /predict request is
validated at once (its own 4xx goes out at once); then, if the worker has other connections open
(with just one there is nobody to batch with), it is queued and handle() returns None. The queue
is answered by one model call scheduled with `loop.call_soon` (so: once this event-loop iteration
has read every request that had arrived), or after SERVING_MICROBATCH_WAIT_US, in batches of at
most SERVING_MICROBATCH_MAX_ROWS rows; each answer goes back through `request.connection.deliver`.
Answers are those of the one-row path, byte for byte: the worker uses micro-batching only if
batched calls give the one-row answers on a fixed sample (batching.answers_exactly), a batch whose
call fails is answered row by row, and a model with the one-row kernel is never batched (the
kernel is faster than any batched call, and its arithmetic is its own).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import orjson

from serving import batching, metrics, open_inference, openapi
from serving.access import AccessControl
from serving.model import HUGE, Model, NonFiniteAnswer
from serving.protocol import Request, ServerState
from serving.validation import RequestError, Validator, invalid

log = logging.getLogger("serving.app")

JSON = b"application/json"
HTML = b"text/html; charset=utf-8"
PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"
DOCS_PAGE = Path(__file__).with_name("static") / "docs.html"
Response = tuple[int, bytes, bytes]  # status, body, content type
GET, POST = frozenset({b"GET", b"HEAD"}), frozenset({b"POST"})


@dataclass(frozen=True)
class MicroBatch:
    """How one-row predictions are batched: at most `max_rows` rows, waiting at most `wait` seconds
    (0: until the end of the event-loop iteration)."""

    max_rows: int = 64
    wait: float = 0.0


class Queued:
    """A validated one-row prediction waiting for its batch."""

    __slots__ = ("request", "values", "key", "mode")

    def __init__(self, request: Request, values: list, key: str, mode: str):
        self.request = request
        self.values = values
        self.key = key  # "named", or the batch key the row came under
        self.mode = mode

    @property
    def named(self) -> bool:
        return self.key == "named"


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
        microbatch: MicroBatch | None = None,
    ):
        self.model = model
        self.microbatch = microbatch if microbatch is not None and microbatch.max_rows > 1 else None
        self.queue: list[Queued] = []
        self.flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the worker's, known at the first batch
        self.validator = Validator(model.names, [feature.type for feature in model.features], max_rows)
        self.access = access
        self.recorder = recorder
        self.render_metrics = render_metrics
        self.state = state
        self.inference = open_inference.InferenceRequest(self.validator)
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
                        self.access.check(request.client, request.api_key, request.query)
                        if self.access
                        else None
                    )
                    response = error_response(denial.status, denial.message) if denial else self.unknown_model
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
        if response is None:
            return None  # counted when answered
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
        try:
            return json_response(200, open_inference.infer_response(self.model, rows, request_id, wanted))
        except NonFiniteAnswer as exc:
            raise self.too_large("rows", rows, exc.rows) from None

    def require_json(self, request: Request) -> None:
        if request.content_type is not None and not _is_json(request.content_type):
            raise RequestError(415, "Send the body as JSON, with Content-Type: application/json.")

    def predict(self, request: Request) -> Response | None:
        self.require_json(request)
        parsed = self.validator.parse(request.body, query_value(request.query, "return"))
        named = parsed.form == "named"
        # With one connection open in this worker there is nobody to batch with: answer at once.
        if (
            self.microbatch is not None
            and (named or len(parsed.rows) == 1)
            and len(self.state.connections) > 1
        ):
            mode = self.return_mode(named, parsed.mode)
            self.enqueue(
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
            values = rows[0]
            huge = [name for name, value in zip(names, values, strict=True) if abs(value) >= HUGE]
            return invalid(dict.fromkeys(huge or names, reason))
        fields = {}
        for index in bad:
            huge = [name for name, value in zip(names, rows[index], strict=True) if abs(value) >= HUGE]
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

    # Micro-batching

    def enqueue(self, item: Queued) -> None:
        queue = self.queue
        queue.append(item)
        if self.flush_handle is None:
            loop = self.loop
            if loop is None:
                loop = self.loop = asyncio.get_running_loop()
            wait = self.microbatch.wait
            self.flush_handle = loop.call_later(wait, self.flush) if wait else loop.call_soon(self.flush)
        elif len(queue) == self.microbatch.max_rows and self.microbatch.wait:
            # A full batch goes at the end of this iteration, not after the wait.
            self.flush_handle.cancel()
            self.flush_handle = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Answer every queued one-row prediction, in batches of at most max_rows; never raises."""
        self.flush_handle = None
        queue, self.queue = self.queue, []
        size = self.microbatch.max_rows
        for start in range(0, len(queue), size):
            batch = queue[start : start + size]
            try:
                self.answer_batch(batch)
            except Exception:  # every answer is guarded below; this is the last resort
                log.exception("Unexpected error answering a micro-batch")

    def answer_batch(self, batch: list[Queued]) -> None:
        """One model call for the batch. Should it fail, each row is tried alone, as without batching,
        so only a request whose own row fails the model gets a 500."""
        if len(batch) > 1:
            want_proba = any(item.mode != "label" for item in batch)
            try:
                labels, by_row = batching.predict_rows(
                    self.model, [item.values for item in batch], want_proba
                )
            except NonFiniteAnswer:
                pass  # the rows too large for the model get their 422 one by one
            except Exception:
                log.exception("A micro-batch of %d rows failed; answering its rows one by one", len(batch))
            else:
                self.recorder.rows(len(batch))
                by_row = by_row or [None] * len(batch)
                for item, label, probabilities in zip(batch, labels, by_row, strict=True):
                    try:
                        document = self.one_row_document(label, probabilities, item.named, item.mode)
                        response = json_response(200, document)
                    except Exception:
                        response = self.failure(item)
                    self.finish(item, response)
                return
        for item in batch:
            try:
                self.recorder.rows(1)
                label, probabilities = self.model.row(item.values, item.mode != "label")
                response = json_response(
                    200, self.one_row_document(label, probabilities, item.named, item.mode)
                )
            except NonFiniteAnswer:
                response = json_response(422, self.too_large(item.key, [item.values], [0]).body())
            except Exception:
                response = self.failure(item)
            self.finish(item, response)

    def failure(self, item: Queued) -> Response:
        log.exception("Unexpected error answering %s %s", item.request.method, item.request.path)
        return error_response(500, "The server failed to answer this request.")

    def finish(self, item: Queued, response: Response) -> None:
        request = item.request
        self.recorder.request(self.predict_metric, response[0], time.perf_counter() - request.started)
        request.connection.deliver(request, response)

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
