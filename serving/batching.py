"""Micro-batching: single rows that arrive together answered by one model call.

With SERVING_MICROBATCH=on, the app validates a one-row /predict request at once (its own 4xx goes
out at once); then, if the worker has other connections open (with just one there is nobody to
batch with), it hands the row to the worker's `MicroBatcher` and answers later. The queue is
answered by one model call scheduled with `loop.call_soon` (so: once this event-loop iteration has
read every request that had arrived), or after SERVING_MICROBATCH_WAIT_US, in batches of at most
SERVING_MICROBATCH_MAX_ROWS rows; each answer goes back through `request.connection.deliver`.

A batch must answer each row exactly as a call for that row alone would: the same label, the same
probabilities to the last bit. `answers_exactly` checks that for the served backend before
micro-batching is used; a backend whose arithmetic depends on the batch (a BLAS kernel picked by
shape, say) fails it and rows are then answered one by one. A batch whose call fails is answered
row by row, and a model with the one-row kernel is never batched (the kernel is faster than any
batched call, and its arithmetic is its own).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import orjson

from serving.backends import verification_rows
from serving.model import Model, NonFiniteAnswer
from serving.protocol import Request, Response, error_response, json_response

if TYPE_CHECKING:
    from serving.app import ServingApp

log = logging.getLogger("serving.app")  # the app's answers, logged under its name

# Rows of the verification sample compared, each alone and within batches of these sizes (and of
# the largest size allowed). Few: with scikit-learn as the backend each call costs milliseconds.
CHECKED_ROWS = 16
CHECKED_SIZES = (2, 16)


def predict_rows(model: Model, rows: list[list], want_proba: bool) -> tuple[list, list | None]:
    """Labels (or values), and probabilities when asked, for single rows in one backend call."""
    array = np.array(rows, dtype=np.float64)
    if want_proba:
        return model.both_for(array)
    return model.labels_for(array), None


def _sample(model: Model) -> list[list]:
    sample = verification_rows(model.estimator, model.n_features)
    step = max(1, len(sample) // CHECKED_ROWS)
    return sample[::step][:CHECKED_ROWS].tolist()


def answers_exactly(model: Model, max_rows: int) -> bool:
    """Whether batches of up to `max_rows` rows give every row its one-row answers, byte for byte.

    A label-only request in a batch that also wants probabilities takes its label from the
    probabilities call, so batched labels are compared both ways. (Alone, a backend gives the same
    label with or without probabilities: both come from one call.)
    """
    if model.row_kernel is not None:
        return False  # the kernel answers one row faster than any batched call, in its own arithmetic
    rows = _sample(model)
    alone = [model.row(row, model.has_proba) for row in rows]
    labels_alone = [orjson.dumps(label) for label, _ in alone]
    both_alone = [orjson.dumps(pair) for pair in alone]
    for size in sorted({min(size, max_rows) for size in (*CHECKED_SIZES, max_rows)} - {1}):
        picked = [index % len(rows) for index in range(size)]
        chunk = [rows[index] for index in picked]
        labels, _ = predict_rows(model, chunk, False)
        if [orjson.dumps(label) for label in labels] != [labels_alone[index] for index in picked]:
            return False
        if model.has_proba:
            labels, probabilities = predict_rows(model, chunk, True)
            if [orjson.dumps(label) for label in labels] != [labels_alone[index] for index in picked]:
                return False
            both = [orjson.dumps(pair) for pair in zip(labels, probabilities, strict=True)]
            if both != [both_alone[index] for index in picked]:
                return False
    return True


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


class MicroBatcher:
    """One worker's queued one-row predictions, answered in batches; the documents are the app's."""

    def __init__(self, config: MicroBatch, app: ServingApp):
        self.max_rows = config.max_rows
        self.wait = config.wait
        self.app = app
        self.queue: list[Queued] = []
        self.flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the worker's, known at the first batch

    def add(self, item: Queued) -> None:
        queue = self.queue
        queue.append(item)
        if self.flush_handle is None:
            loop = self.loop
            if loop is None:
                loop = self.loop = asyncio.get_running_loop()
            wait = self.wait
            self.flush_handle = loop.call_later(wait, self.flush) if wait else loop.call_soon(self.flush)
        elif len(queue) == self.max_rows and self.wait:
            # A full batch goes at the end of this iteration, not after the wait.
            self.flush_handle.cancel()
            self.flush_handle = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Answer every queued one-row prediction, in batches of at most max_rows; never raises."""
        self.flush_handle = None
        queue, self.queue = self.queue, []
        size = self.max_rows
        for start in range(0, len(queue), size):
            batch = queue[start : start + size]
            try:
                self.answer(batch)
            except Exception:  # every answer is guarded below; this is the last resort
                log.exception("Unexpected error answering a micro-batch")

    def answer(self, batch: list[Queued]) -> None:
        """One model call for the batch. Should it fail, each row is tried alone, as without batching,
        so only a request whose own row fails the model gets a 500."""
        app = self.app
        if len(batch) > 1:
            want_proba = any(item.mode != "label" for item in batch)
            try:
                labels, by_row = predict_rows(app.model, [item.values for item in batch], want_proba)
            except NonFiniteAnswer:
                pass  # the rows too large for the model get their 422 one by one
            except Exception:
                log.exception("A micro-batch of %d rows failed; answering its rows one by one", len(batch))
            else:
                app.recorder.rows(len(batch))
                by_row = by_row or [None] * len(batch)
                for item, label, probabilities in zip(batch, labels, by_row, strict=True):
                    try:
                        document = app.one_row_document(label, probabilities, item.named, item.mode)
                        response = json_response(200, document)
                    except Exception:
                        response = self.failure(item)
                    self.finish(item, response)
                return
        for item in batch:
            try:
                app.recorder.rows(1)
                label, probabilities = app.model.row(item.values, item.mode != "label")
                response = json_response(
                    200, app.one_row_document(label, probabilities, item.named, item.mode)
                )
            except NonFiniteAnswer:
                response = json_response(422, app.too_large(item.key, [item.values], [0]).body())
            except Exception:
                response = self.failure(item)
            self.finish(item, response)

    def failure(self, item: Queued) -> Response:
        log.exception("Unexpected error answering %s %s", item.request.method, item.request.path)
        return error_response(500, "The server failed to answer this request.")

    def finish(self, item: Queued, response: Response) -> None:
        request = item.request
        seconds = time.perf_counter() - request.started
        self.app.recorder.request(self.app.predict_metric, response[0], seconds)
        self.app.log_answer(request, response[0], response[1], seconds)
        request.connection.deliver(request, response)
