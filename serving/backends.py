"""Ways to compute predictions, each checked against scikit-learn before it is used.

- ONNX Runtime (converted with skl2onnx): one iris row in ~15 µs where scikit-learn spends
  ~250 µs checking its input; a 100-tree forest on 64 rows ~40x faster. One single-threaded
  session per worker process (see OnnxBackend for why not more threads per request).
- A plain-Python kernel for one row through a linear model (optionally after StandardScaler):
  a few µs, where any NumPy or ONNX call costs 10-25 µs of fixed overhead.
- scikit-learn itself, always correct, the fallback.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from operator import mul

import numpy as np

log = logging.getLogger("serving.backends")


def _final_estimator(estimator):
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


def _trees(estimator):
    """Fitted decision trees of a tree or forest, whose splits a verification sample should probe."""
    if hasattr(estimator, "tree_"):
        return [estimator]
    found = []
    for member in np.ravel(getattr(estimator, "estimators_", [])):
        if hasattr(member, "tree_"):
            found.append(member)
    return found


def verification_rows(estimator, n_features: int) -> np.ndarray:
    """A fixed sample of inputs at many scales, plus values on and around tree split thresholds."""
    rng = np.random.default_rng(0)
    parts = [np.zeros((1, n_features))]
    parts += [rng.normal(0.0, scale, (24, n_features)) for scale in (0.1, 1.0, 10.0, 100.0, 1000.0)]
    per_feature: list[list[float]] = [[] for _ in range(n_features)]
    for tree in _trees(estimator):
        nodes = tree.tree_.feature >= 0
        for feature, threshold in zip(tree.tree_.feature[nodes], tree.tree_.threshold[nodes], strict=True):
            if feature < n_features:
                per_feature[feature].append(threshold)
    if any(per_feature):
        rows = rng.normal(0.0, 1.0, (128, n_features))
        for feature, thresholds in enumerate(per_feature):
            if not thresholds:
                continue
            picked = rng.choice(np.asarray(thresholds), 128)
            as_float32 = picked.astype(np.float32).astype(np.float64)
            # On the split, on float32 neighbours, and just off it in float64 (sklearn rounds to float32).
            variants = [
                picked,
                as_float32,
                np.nextafter(as_float32.astype(np.float32), np.float32(np.inf)).astype(np.float64),
                np.nextafter(as_float32.astype(np.float32), np.float32(-np.inf)).astype(np.float64),
                picked * (1 + 1e-9),
                picked * (1 - 1e-9),
            ]
            rows[:, feature] = np.choose(rng.integers(0, len(variants), 128), variants)
        parts.append(rows)
    return np.vstack(parts)


@dataclass
class OnnxPlan:
    """A converted model: bytes to build a session from, and the input precision it wants."""

    onnx_bytes: bytes
    dtype: type


def convert_to_onnx(estimator, n_features: int) -> list[OnnxPlan]:
    """Convert to ONNX in float64 and float32; each is verified later, in the worker.

    Trees only in float32: scikit-learn compares float32 inputs with their splits, which a float64
    graph does not round to, so near a split it answers differently and would fail the check.
    """
    try:
        from skl2onnx import to_onnx
    except ImportError:
        return []
    plans = []
    final = _final_estimator(estimator)
    options = {id(final): {"zipmap": False}} if hasattr(final, "classes_") else None
    for dtype in (np.float32,) if _trees(final) else (np.float64, np.float32):
        try:
            onx = to_onnx(estimator, np.zeros((1, n_features), dtype=dtype), options=options)
        except Exception as exc:  # any converter gap means "serve with scikit-learn"
            log.info("No %s ONNX conversion for this model (%s).", np.dtype(dtype).name, exc)
            continue
        plans.append(OnnxPlan(onx.SerializeToString(), dtype))
    return plans


class SklearnBackend:
    name = "scikit-learn"

    def __init__(self, estimator):
        self.estimator = estimator

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.estimator.predict(rows)

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return self.estimator.predict_proba(rows)

    def predict_both(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.estimator.predict(rows), self.estimator.predict_proba(rows)


class OnnxBackend:
    """One ONNX Runtime session, single-threaded: the worker processes are the parallelism.

    A second thread for a large batch when the other cores are idle (one connection) was tried on
    64-row batches of a 100-tree forest, 2 vCPUs, and left out:
    - ONNX Runtime's own intra-op threads add a forest's trees up in another order, so the
      probabilities would change in the last bit with the server's load; in the container they
      were also many times slower (141 against 2,669 requests/s at one connection).
    - Half the rows on a helper thread with a second session gives the same bits, but was 15-30%
      slower at one connection: waking an idle vCPU costs about as much as the half it takes over.
    """

    def __init__(self, plan: OnnxPlan, classes: list | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self.session = onnxruntime.InferenceSession(
            plan.onnx_bytes, options, providers=["CPUExecutionProvider"]
        )
        self.dtype = plan.dtype
        self.name = f"onnxruntime ({np.dtype(plan.dtype).name})"
        self.input_name = self.session.get_inputs()[0].name
        self.classes = classes

    def _run(self, rows: np.ndarray) -> list:
        return self.session.run(None, {self.input_name: rows.astype(self.dtype, copy=False)})

    def _probabilities(self, output) -> np.ndarray:
        # skl2onnx's default ZipMap gives one {class: probability} map per row.
        if isinstance(output, list):
            return np.array([[row[value] for value in self.classes] for row in output], dtype=np.float64)
        return output

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self._run(rows)[0]

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return self._probabilities(self._run(rows)[1])

    def predict_both(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        label, proba = self._run(rows)[:2]
        return label, self._probabilities(proba)


class LinearRowKernel:
    """One row through a linear model, in plain Python floats.

    Covers LogisticRegression (binary: logistic; multiclass: softmax) and single-target linear
    regressors, with any leading StandardScaler steps folded into the weights. Larger models go
    to ONNX, where vectorised arithmetic wins.
    """

    MAX_WEIGHTS = 512

    def __init__(self, weights: list[list[float]], intercepts: list[float], link: str):
        self.weights = weights
        self.intercepts = intercepts
        self.link = link  # softmax | logistic | identity

    @classmethod
    def from_estimator(cls, estimator) -> LinearRowKernel | None:
        from sklearn.base import is_regressor
        from sklearn.linear_model import LogisticRegression
        from sklearn.linear_model._base import LinearModel
        from sklearn.preprocessing import StandardScaler

        steps = [step for _, step in getattr(estimator, "steps", [("", estimator)]) if step != "passthrough"]
        *scalers, final = steps
        if not all(type(scaler) is StandardScaler for scaler in scalers):
            return None
        if type(final) is LogisticRegression:
            weights = np.asarray(final.coef_, dtype=np.float64)
            link = "softmax" if weights.shape[0] > 1 else "logistic"
        elif isinstance(final, LinearModel) and is_regressor(final) and np.ndim(final.coef_) == 1:
            weights = np.asarray(final.coef_, dtype=np.float64).reshape(1, -1)
            link = "identity"
        else:
            return None
        intercepts = np.broadcast_to(np.asarray(final.intercept_, dtype=np.float64), weights.shape[:1]).copy()
        for scaler in reversed(scalers):
            # w . (x - mean) / scale + b  ==  (w / scale) . x + (b - w . mean / scale)
            scale = scaler.scale_ if scaler.scale_ is not None else 1.0
            mean = scaler.mean_ if scaler.mean_ is not None else 0.0
            weights = weights / scale
            intercepts = intercepts - weights @ np.broadcast_to(mean, weights.shape[1:])
        if weights.size > cls.MAX_WEIGHTS:
            return None
        return cls(weights.tolist(), intercepts.tolist(), link)

    def row(self, values: list) -> tuple[float | int, list[float] | None]:
        """(class index or predicted value, probabilities or None) for one row."""
        pairs = zip(self.weights, self.intercepts, strict=True)
        scores = [sum(map(mul, weights, values)) + bias for weights, bias in pairs]
        if self.link == "identity":
            return scores[0], None
        if self.link == "logistic":
            score = scores[0]
            if score >= 0:
                positive = 1.0 / (1.0 + math.exp(-score))
            else:
                exp = math.exp(score)
                positive = exp / (1.0 + exp)
            return int(score > 0), [1.0 - positive, positive]
        top = max(scores)
        exps = [math.exp(score - top) for score in scores]
        total = sum(exps)
        return scores.index(top), [exp / total for exp in exps]
