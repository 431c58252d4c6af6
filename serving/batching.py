"""Many single rows through one model call, for micro-batching (see app.py and protocol.py).

A micro-batch must answer each row exactly as a call for that row alone would: the same label, the
same probabilities to the last bit. `answers_exactly` checks that for the served backend before
micro-batching is used; a backend whose arithmetic depends on the batch (a BLAS kernel picked by
shape, say) fails it and rows are then answered one by one.
"""

from __future__ import annotations

import numpy as np
import orjson

from serving.backends import verification_rows
from serving.model import Model

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
