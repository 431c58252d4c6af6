"""Ways to compute predictions, each checked against scikit-learn before it is used.

- ONNX Runtime (converted with skl2onnx): one iris row in ~15 µs where scikit-learn spends
  ~250 µs checking its input; a 100-tree forest on 64 rows ~40x faster. One single-threaded
  session per worker process (see OnnxBackend for why not more threads per request).
- A plain-Python kernel for one row through a linear model (optionally after StandardScaler):
  a few µs, where any NumPy or ONNX call costs 10-25 µs of fixed overhead; and the same weights
  in NumPy for small batches (64 iris rows: ~20 µs less per request than an ONNX Runtime run).
- scikit-learn itself, always correct, the fallback.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from operator import mul

import numpy as np

from serving import splits

log = logging.getLogger("serving.backends")


def _final_estimator(estimator):
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


def _steps_before(estimator):
    """A pipeline's steps before its final estimator, as one transformer; None if there are none."""
    steps = getattr(estimator, "steps", None)
    if not steps or all(step in (None, "passthrough") for _, step in steps[:-1]):
        return None
    return estimator[:-1]


def _threshold_rows(estimator, n_features: int, rng) -> np.ndarray | None:
    """Rows with values on and around the final estimator's tree splits, in the model's input space.

    Behind other steps the splits are in those steps' output space: the rows are made there and
    mapped back with the steps' inverse_transform (scalers); without one they cannot be aimed.
    """
    final, before = _final_estimator(estimator), _steps_before(estimator)
    per_feature = splits.thresholds(final)
    if not per_feature or (before is not None and not hasattr(before, "inverse_transform")):
        return None
    width = final.n_features_in_
    rows = rng.normal(0.0, 1.0, (128, width))
    for feature, values in per_feature.items():
        if feature < width:
            rows[:, feature] = splits.near(np.asarray(values), rng, 128)
    if before is None:
        return rows
    try:
        mapped = np.asarray(before.inverse_transform(rows), dtype=np.float64)
    except Exception:
        return None
    return mapped if mapped.shape == (128, n_features) and np.isfinite(mapped).all() else None


def boundary_rows(predict, sample: np.ndarray, numeric: list[int], pairs: int = 24, steps: int = 45):
    """Rows on both sides of a classifier's decision boundaries, as close as float64 bisection
    gets (about 1e-13 of the way between two rows), or None when the sample has one label.

    For models whose labels come from arithmetic on all features (linear models, SVMs): an ONNX
    form computing in float32 inside (an SVM's support vectors and coefficients are float32 in
    ONNX) labels such rows otherwise, and is refused by them. Only the `numeric` columns move; a
    pair of rows shares the rest."""
    rows = np.asarray([row for row in sample if not _missing_number(row, numeric)], dtype=sample.dtype)
    if len(rows) < 2 or not numeric:
        return None
    labels = np.asarray(predict(rows))
    rng = np.random.default_rng(1)
    first = rng.integers(0, len(rows), pairs * 8)
    second = rng.integers(0, len(rows), pairs * 8)
    keep = np.flatnonzero(labels[first] != labels[second])[:pairs]
    if not len(keep):
        return None
    start = rows[first[keep]].copy()
    end = start.copy()
    end[:, numeric] = rows[second[keep]][:, numeric]
    begin = start[:, numeric].astype(np.float64)
    span = end[:, numeric].astype(np.float64) - begin
    side = np.asarray(predict(start))
    low, high = np.zeros(len(keep)), np.ones(len(keep))

    def at(weights: np.ndarray) -> np.ndarray:
        moved = start.copy()
        moved[:, numeric] = begin + span * weights[:, None]
        return moved

    for _ in range(steps):
        middle = (low + high) / 2
        same = np.asarray(predict(at(middle))) == side
        low, high = np.where(same, middle, low), np.where(same, high, middle)
    return np.vstack([at(low), at(high)])


def _missing_number(row, numeric: list[int]) -> bool:
    return any(isinstance(row[index], float) and row[index] != row[index] for index in numeric)


def labels_from_arithmetic(estimator) -> bool:
    """A classifier whose labels come from arithmetic on the features (no trees to split them)."""
    final = _final_estimator(estimator)
    return hasattr(final, "classes_") and not splits.trees(final)


def verification_rows(estimator, n_features: int) -> np.ndarray:
    """A fixed sample of inputs at many scales, plus values on and around tree split thresholds."""
    rng = np.random.default_rng(0)
    parts = [np.zeros((1, n_features))]
    parts += [rng.normal(0.0, scale, (24, n_features)) for scale in (0.1, 1.0, 10.0, 100.0, 1000.0)]
    if estimator is not None:
        thresholds = _threshold_rows(estimator, n_features, rng)
        if thresholds is not None:
            parts.append(thresholds)
        if labels_from_arithmetic(estimator):
            near = boundary_rows(estimator.predict, np.vstack(parts), list(range(n_features)))
            if near is not None:
                parts.append(near)
    return np.vstack(parts)


@dataclass
class OnnxPlan:
    """A converted model: bytes to build a session from, what it takes, and what it computes in.

    `dtype` is the precision of its answers, which sets the tolerance they are checked to;
    `input_dtype` what the session is fed (the same unless the graph casts inside). Labels come
    from the graph, or (`graph_labels` false) from float32 probabilities as forests pick them.
    `inputs` names a table model's inputs and what each takes (see serving.onnx_tables).
    """

    onnx_bytes: bytes
    dtype: type
    input_dtype: type | None = None
    graph_labels: bool = False
    described: str = ""
    inputs: tuple = ()

    def __post_init__(self):
        if self.input_dtype is None:
            self.input_dtype = self.dtype

    @property
    def precision(self) -> str:
        """ "float32", or "float64 input, float32 trees" for steps in float64 before float32 trees."""
        if self.described:
            return self.described
        answers, given = np.dtype(self.dtype).name, np.dtype(self.input_dtype).name
        return answers if answers == given else f"{given} input, {answers} trees"


def plan_for(onx, given, final, inputs: tuple = ()) -> OnnxPlan:
    """The plan for a converted graph fed `given`: tree ensembles in ONNX score in float32."""
    trees = any(node.op_type.startswith("TreeEnsemble") for node in onx.graph.node)
    answers = np.float32 if trees else given
    described = ""
    if trees and given is np.float64 and not splits.compares_in_float32(final):
        described = "float64 input and splits, float32 scores"
    return OnnxPlan(onx.SerializeToString(), answers, given, not splits.trees(final), described, inputs)


def to_onnx(model, final, **given):
    """skl2onnx's conversion, with classifiers' scores as a plain array (no ZipMap) where the
    final estimator's converter offers the choice (its LinearSVC converter does not: given none,
    the final estimator is still asked for one inside a pipeline). ai.onnx.ml stays at version 3,
    the newest onnxmltools' converters write."""
    from skl2onnx import get_latest_tested_opset_version
    from skl2onnx import to_onnx as convert

    given = {"target_opset": {"": get_latest_tested_opset_version(), "ai.onnx.ml": 3}, **given}
    with warnings.catch_warnings():  # converters read attributes scikit-learn marks deprecated
        warnings.simplefilter("ignore")
        try:
            return convert(model, options={id(final): {"zipmap": False}}, **given)
        except Exception as exc:
            if "Option 'zipmap' not in" not in str(exc):  # the converter does not take it
                raise
        return convert(model, options={id(final): {}}, **given)


def _chain_through_float32(steps, trees):
    """One graph: `steps` (float64) whose output is cast to float32 and fed to `trees`."""
    import onnx
    from onnx import compose, helper

    steps = compose.add_prefix(steps, "steps_", rename_inputs=False)
    trees = compose.add_prefix(trees, "trees_")
    cast = helper.make_node(
        "Cast",
        [steps.graph.output[0].name],
        [trees.graph.input[0].name],
        to=onnx.TensorProto.FLOAT,
        name="steps_to_float32",
    )
    graph = helper.make_graph(
        [*steps.graph.node, cast, *trees.graph.node],
        "pipeline",
        list(steps.graph.input),
        list(trees.graph.output),
        initializer=[*steps.graph.initializer, *trees.graph.initializer],
    )
    opsets: dict[str, int] = {}
    for opset in [*steps.opset_import, *trees.opset_import]:
        opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
    imports = [helper.make_opsetid(domain, version) for domain, version in opsets.items()]
    model = helper.make_model(graph, opset_imports=imports, ir_version=steps.ir_version)
    onnx.checker.check_model(model)
    return model


def convert_to_onnx(estimator, n_features: int) -> list[OnnxPlan]:
    """Candidate ONNX conversions, most faithful first; each is verified later, in the worker.

    Models that compare in float32 (scikit-learn's trees, XGBoost) only in float32: a float64
    graph does not round inputs as they do, so near a split it answers differently and would fail
    the check. Steps before such trees (a scaler) run in float64 and are cast to float32 in the
    graph, as scikit-learn does: in float32 throughout, rows close to a split land on its other
    side. Anything else in float64 first, then float32.
    """
    try:
        from serving import onnx_converters
    except ImportError:
        return []
    onnx_converters.register()
    final = _final_estimator(estimator)
    if splits.native_categories(final):
        log.info("No ONNX conversion: skl2onnx converts category splits as thresholds.")
        return []

    def convert(model, width: int, dtype):
        try:
            return to_onnx(model, final, X=np.zeros((1, width), dtype=dtype))
        except Exception as exc:  # any converter gap means "serve with scikit-learn"
            log.info("No %s ONNX conversion for %s (%s).", np.dtype(dtype).name, type(model).__name__, exc)
            return None

    candidates = []
    if not splits.compares_in_float32(final):
        for dtype in (np.float64, np.float32):
            candidates.append((convert(estimator, n_features, dtype), dtype))
    else:
        before = _steps_before(estimator)
        steps = convert(before, n_features, np.float64) if before is not None else None
        trees = convert(final, final.n_features_in_, np.float32) if steps is not None else None
        if trees is not None:
            try:
                candidates.append((_chain_through_float32(steps, trees), np.float64))
            except Exception as exc:
                log.info("The steps and trees did not chain into one ONNX graph (%s).", exc)
        candidates.append((convert(estimator, n_features, np.float32), np.float32))
    return [plan_for(onx, given, final) for onx, given in candidates if onx is not None]


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
        self.dtype = plan.input_dtype
        self.name = f"onnxruntime ({plan.precision})"
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

    def as_json(self) -> dict:
        """The form SERVING_MODEL_META.linear_kernel takes."""
        return {"weights": self.weights, "intercepts": self.intercepts, "link": self.link}

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


class LinearBatchBackend:
    """Batches of up to MAX_ROWS rows through a linear kernel's weights in NumPy; larger ones
    through `large` (ONNX Runtime's kernels win there: 10,000 iris rows in half the time).

    The scores are laid out [classes, rows]: the softmax's max and sum over the classes are then
    elementwise passes over whole rows of scores, not a buffered reduction per row (a 64-row iris
    batch's probabilities cost over a quarter less). The ufuncs are called themselves: their
    ndarray-method wrappers cost more than 64 rows' arithmetic."""

    MAX_ROWS = 128

    def __init__(self, kernel: LinearRowKernel, classes: list, large):
        self.weights = np.array(kernel.weights, dtype=np.float64)  # [classes, features]
        self.intercepts = np.array(kernel.intercepts, dtype=np.float64)[:, None]
        self.link = kernel.link
        self.classes = np.array(classes) if classes else None
        self.large = large
        self.name = f"{large.name}, NumPy for batches of up to {self.MAX_ROWS} rows"

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        scores = np.dot(self.weights, rows.T)
        scores += self.intercepts
        return scores

    def _labels(self, scores: np.ndarray) -> np.ndarray:
        if self.link == "identity":
            return scores[0]
        assert self.classes is not None
        if self.link == "logistic":
            return self.classes[(scores[0] > 0).astype(np.intp)]
        return self.classes[scores.argmax(axis=0)]

    def predict(self, rows: np.ndarray) -> np.ndarray:
        if len(rows) > self.MAX_ROWS:
            return self.large.predict(rows)
        return self._labels(self._scores(rows))

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return self.predict_both(rows)[1]

    def predict_both(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(rows) > self.MAX_ROWS:
            return self.large.predict_both(rows)
        scores = self._scores(rows)
        labels = self._labels(scores)
        if self.link == "logistic":
            from scipy.special import expit

            positive = expit(scores[0])
            return labels, np.column_stack((1.0 - positive, positive))
        scores -= np.maximum.reduce(scores, axis=0)
        np.exp(scores, out=scores)
        scores /= np.add.reduce(scores, axis=0)
        return labels, scores.T
