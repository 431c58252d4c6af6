"""Load the estimator and answer predictions for validated float64 arrays.

The master process loads the artifact (and, for scikit-learn models, converts it to ONNX) once;
each forked worker calls `Model.start()`, which builds its own ONNX Runtime session and keeps it
only if it gives the same answers as scikit-learn on a sample. ONNX Runtime answers one iris row
in ~15 µs where scikit-learn takes ~250 µs of input checking, and a 100-tree forest is ~40x faster.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.config import ConfigError, Feature, ModelMeta

log = logging.getLogger("serving.model")


class ModelError(Exception):
    """The artifact cannot be served; the message says why."""


def load_estimator(path: Path, meta: ModelMeta, allow_pickle: bool):
    """Load a scikit-learn estimator the way its format allows."""
    if meta.format == "skops":
        import skops.io as sio

        try:
            return sio.load(path, trusted=list(meta.trusted_types))
        except zipfile.BadZipFile:
            raise ModelError("The artifact is not a skops file (it is not a zip archive).") from None
        except Exception as exc:
            raise ModelError(f"The skops file could not be loaded: {exc}") from None
    if meta.format in ("joblib", "pickle"):
        if not allow_pickle:
            raise ConfigError(
                f"The artifact is a {meta.format} file, which runs code when loaded; "
                "set SERVING_ALLOW_PICKLE=true to load it anyway."
            )
        log.warning(
            "LOADING A %s ARTIFACT: it can run arbitrary code. SERVING_ALLOW_PICKLE=true says it is trusted.",
            meta.format.upper(),
        )
        try:
            if meta.format == "joblib":
                import joblib

                return joblib.load(path)
            with open(path, "rb") as handle:
                return pickle.load(handle)
        except Exception as exc:
            raise ModelError(f"The {meta.format} file could not be loaded: {exc}") from None
    raise ModelError(f"{meta.format} artifacts are not supported by this server.")


def _json_scalar(value):
    return value.item() if isinstance(value, np.generic) else value


def _strip_feature_names(obj, seen: set[int]) -> None:
    """Forget fitted feature names so arrays pass without sklearn's per-call name check and warning.

    The server itself puts columns in schema order (checked against the names at load), so the
    check adds nothing but cost.
    """
    from sklearn.base import BaseEstimator

    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, BaseEstimator):
        obj.__dict__.pop("feature_names_in_", None)
        children = vars(obj).values()
    elif isinstance(obj, list | tuple):
        children = obj
    elif isinstance(obj, dict):
        children = obj.values()
    else:
        return
    for child in children:
        if isinstance(child, BaseEstimator | list | tuple | dict):
            _strip_feature_names(child, seen)


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
    """Convert to ONNX in float64 and float32; each is verified later, in the worker."""
    try:
        from skl2onnx import to_onnx
    except ImportError:
        return []
    plans = []
    final = _final_estimator(estimator)
    options = {id(final): {"zipmap": False}} if hasattr(final, "classes_") else None
    for dtype in (np.float64, np.float32):
        try:
            onx = to_onnx(estimator, np.zeros((1, n_features), dtype=dtype), options=options)
        except Exception as exc:  # any converter gap means "serve with scikit-learn"
            log.info("No %s ONNX conversion for this model (%s).", np.dtype(dtype).name, exc)
            continue
        plans.append(OnnxPlan(onx.SerializeToString(), dtype))
    return plans


class SklearnBackend:
    name = "scikit-learn"

    def __init__(self, estimator, has_proba: bool):
        self.estimator = estimator
        self.has_proba = has_proba

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.estimator.predict(rows)

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return self.estimator.predict_proba(rows)

    def predict_both(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.estimator.predict(rows), self.estimator.predict_proba(rows)


class OnnxBackend:
    """One ONNX Runtime session, single-threaded: the worker processes are the parallelism."""

    def __init__(self, plan: OnnxPlan):
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
        self.outputs = [output.name for output in self.session.get_outputs()]

    def _run(self, rows: np.ndarray) -> list:
        return self.session.run(None, {self.input_name: rows.astype(self.dtype, copy=False)})

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self._run(rows)[0]

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return self._run(rows)[1]

    def predict_both(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        label, proba = self._run(rows)[:2]
        return label, proba


class Model:
    """The served model: schema, classes and labels, and a backend that predicts."""

    def __init__(self, estimator, meta: ModelMeta, accelerate: bool = True):
        if not hasattr(estimator, "predict") or not hasattr(estimator, "n_features_in_"):
            raise ModelError(f"The artifact holds a {type(estimator).__name__}, not a fitted estimator.")
        self.meta = meta
        self.name = meta.name
        self.version = meta.version
        self.sha256 = meta.sha256
        self.n_features = int(estimator.n_features_in_)
        fitted_names = getattr(estimator, "feature_names_in_", None)
        fitted_names = [str(name) for name in fitted_names] if fitted_names is not None else None
        if meta.schema:
            self.features = meta.schema
        elif fitted_names:
            self.features = tuple(Feature(name) for name in fitted_names)
        else:
            self.features = tuple(Feature(f"x{index}") for index in range(self.n_features))
        if len(self.features) != self.n_features:
            raise ModelError(
                f"The schema names {len(self.features)} features but the model takes {self.n_features}."
            )
        self.names = [feature.name for feature in self.features]
        if fitted_names is not None and fitted_names != self.names:
            raise ModelError(f"The schema's features {self.names} are not the model's {fitted_names}.")
        classes = getattr(estimator, "classes_", None)
        self.is_classifier = classes is not None
        self.classes = [_json_scalar(value) for value in classes] if self.is_classifier else []
        if (
            self.is_classifier
            and meta.classes
            and [str(c) for c in meta.classes] != [str(c) for c in self.classes]
        ):
            raise ModelError(
                f"SERVING_MODEL_META.classes {list(meta.classes)} are not the model's {self.classes}."
            )
        self.labels = [meta.label_map.get(str(value), value) for value in self.classes]
        self.label_of = dict(zip(self.classes, self.labels, strict=True))
        self.has_proba = self.is_classifier and hasattr(estimator, "predict_proba")
        _strip_feature_names(estimator, set())
        self.estimator = estimator
        self.plans = convert_to_onnx(estimator, self.n_features) if accelerate else []
        self.backend: SklearnBackend | OnnxBackend = SklearnBackend(estimator, self.has_proba)

    def start(self) -> None:
        """Prepare this process to predict: pick the fastest backend that agrees with scikit-learn."""
        import sklearn

        # Inputs are validated (finite, right shape) before they reach the model.
        sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
        sample = verification_rows(self.estimator, self.n_features)
        try:
            expected = self._answers(self.backend, sample)
        except Exception as exc:
            raise ModelError(
                f"The model could not predict on a NumPy array of {self.n_features} columns: {exc}"
            ) from None
        for plan in self.plans:
            try:
                candidate = OnnxBackend(plan)
                agrees = self._agree(expected, self._answers(candidate, sample), plan.dtype)
            except Exception as exc:
                log.info("ONNX %s session unusable: %s", np.dtype(plan.dtype).name, exc)
                continue
            if agrees:
                self.backend = candidate
                break
        self.plans = []
        log.info("Predicting with %s.", self.backend.name)

    def _answers(self, backend, sample: np.ndarray) -> tuple:
        if self.has_proba:
            labels, proba = backend.predict_both(sample)
            return np.asarray(labels).ravel().tolist(), np.asarray(proba, dtype=np.float64)
        return np.asarray(backend.predict(sample)).ravel().tolist(), None

    def _agree(self, expected: tuple, actual: tuple, dtype) -> bool:
        tolerance = 1e-9 if dtype is np.float64 else 1e-5
        if self.is_classifier:
            if expected[0] != actual[0]:
                return False
            return expected[1] is None or np.allclose(expected[1], actual[1], rtol=0, atol=tolerance)
        return np.allclose(np.asarray(expected[0]), np.asarray(actual[0]), rtol=tolerance, atol=tolerance)

    def labels_for(self, rows: np.ndarray) -> list:
        """Predicted labels (classifier) or values (regressor), one per row, JSON-ready."""
        raw = np.asarray(self.backend.predict(rows)).ravel().tolist()
        if self.is_classifier:
            label_of = self.label_of
            return [label_of[value] for value in raw]
        return raw

    def probabilities_for(self, rows: np.ndarray) -> list[list[float]]:
        return np.asarray(self.backend.predict_proba(rows), dtype=np.float64).tolist()

    def both_for(self, rows: np.ndarray) -> tuple[list, list[list[float]]]:
        raw, proba = self.backend.predict_both(rows)
        label_of = self.label_of
        labels = [label_of[value] for value in np.asarray(raw).ravel().tolist()]
        return labels, np.asarray(proba, dtype=np.float64).tolist()
