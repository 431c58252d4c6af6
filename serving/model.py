"""Load the estimator and answer predictions for validated rows.

The master process loads the artifact (and converts it to ONNX) once; each forked worker calls
`Model.start()`, which builds its own ONNX Runtime session and row kernel and keeps each only if
it gives the same answers as scikit-learn on a fixed sample (see backends.py).
"""

from __future__ import annotations

import logging
import math
import pickle
import zipfile
from pathlib import Path

import numpy as np

from serving import onnx_graph
from serving.backends import (
    LinearBatchBackend,
    LinearRowKernel,
    OnnxBackend,
    OnnxPlan,
    SklearnBackend,
    convert_to_onnx,
    verification_rows,
)
from serving.config import ConfigError, Feature, ModelMeta
from serving.onnx_tables import OnnxTableBackend, check_parts, convert_table
from serving.tabular import FrameBackend, needs_table, table_sample

log = logging.getLogger("serving.model")


class ModelError(Exception):
    """The artifact cannot be served; the message says why."""


PICKLED = ("joblib", "pickle")  # formats that run code when loaded


def load_estimator(path: Path, fmt: str, trusted_types=(), *, allow_pickle: bool = False):
    """Load a scikit-learn estimator from a skops, joblib or pickle file.

    skops trusts `trusted_types` beyond its defaults; joblib and pickle files run code when loaded,
    so they load only with `allow_pickle` (else ConfigError). ModelError says why a file cannot be
    loaded; a MemoryError passes through (the upload sandbox reports it as its memory limit).
    """
    if fmt == "skops":
        import skops.io as sio

        try:
            return sio.load(path, trusted=list(trusted_types))
        except zipfile.BadZipFile:
            raise ModelError("This is not a skops file (it is not a zip archive).") from None
        except MemoryError:
            raise
        except Exception as exc:
            raise ModelError(f"The skops file could not be loaded: {exc}") from None
    if fmt in PICKLED:
        if not allow_pickle:
            raise ConfigError(
                f"The artifact is a {fmt} file, which runs code when loaded; "
                "set SERVING_ALLOW_PICKLE=true to load it anyway."
            )
        try:
            if fmt == "joblib":
                import joblib

                return joblib.load(path)
            with open(path, "rb") as handle:
                return pickle.load(handle)
        except MemoryError:
            raise
        except Exception as exc:
            raise ModelError(f"The {fmt} file could not be loaded: {exc}") from None
    raise ModelError(f"{fmt} artifacts are not supported by this server.")


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


class LabelsFromProbabilities:
    """A float32 classifier's labels taken from its probabilities, ties going to the first class.

    scikit-learn picks the first of tied classes (a 100-tree forest splitting 50 to 50);
    float32 sums tip such ties either way, so probabilities within float32 noise count as tied.
    """

    TIE = 1e-5  # the tolerance float32 probabilities are checked to

    def __init__(self, backend, classes: list):
        self.backend = backend
        self.name = backend.name
        self.classes = np.asarray(classes, dtype=object)

    def _labels(self, proba: np.ndarray) -> np.ndarray:
        if proba.shape[1] == 2:  # the same rule, in half the time
            return np.where(proba[:, 0] >= proba[:, 1] - self.TIE, self.classes[0], self.classes[1])
        tied = proba >= proba.max(axis=1, keepdims=True) - self.TIE
        return self.classes[tied.argmax(axis=1)]

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self._labels(np.asarray(self.backend.predict_proba(rows)))

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return self.backend.predict_proba(rows)

    def predict_both(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        proba = np.asarray(self.backend.predict_proba(rows))
        return self._labels(proba), proba


class Model:
    """The served model: schema, classes and labels, and the backends that predict.

    `backend` answers arrays of rows; `row_kernel`, when there is one, answers a single row.
    Build one with `from_estimator` (skops, joblib, pickle) or `from_onnx`.
    """

    def __init__(
        self, meta: ModelMeta, n_features: int, fitted_names: list[str] | None, classes, has_proba: bool
    ):
        self.meta = meta
        self.name = meta.name
        self.version = meta.version
        self.sha256 = meta.sha256
        self.n_features = n_features
        if meta.schema:
            self.features = meta.schema
        elif fitted_names:
            self.features = tuple(Feature(name) for name in fitted_names)
        else:
            self.features = tuple(Feature(f"x{index}") for index in range(n_features))
        if len(self.features) != n_features:
            raise ModelError(
                f"The schema names {len(self.features)} features but the model takes {n_features}."
            )
        self.names = [feature.name for feature in self.features]
        if fitted_names is not None and fitted_names != self.names:
            raise ModelError(f"The schema's features {self.names} are not the model's {fitted_names}.")
        self.is_classifier = classes is not None
        self.classes = [_json_scalar(value) for value in classes] if self.is_classifier else []
        given = [str(value) for value in meta.classes]
        if self.is_classifier and given and given != [str(value) for value in self.classes]:
            raise ModelError(f"SERVING_MODEL_META.classes {given} are not the model's {self.classes}.")
        self.labels = [meta.label_map.get(str(value), value) for value in self.classes]
        self.label_of = dict(zip(self.classes, self.labels, strict=True))
        self.has_proba = has_proba
        self.estimator = None
        self.accelerate = False
        self.plans: list[OnnxPlan] = []
        self.backend: (
            SklearnBackend | OnnxBackend | FrameBackend | LabelsFromProbabilities | LinearBatchBackend | None
        ) = None
        self.row_kernel: LinearRowKernel | None = None
        # Why each refused ONNX form was refused: the first rows it answered differently.
        self.refusals: list[str] = []
        # Plain: rows are float64 arrays of numbers. Otherwise a table (see serving.tabular).
        self.plain = all(feature.plain for feature in self.features)

    @classmethod
    def from_estimator(cls, estimator, meta: ModelMeta, accelerate: bool = True) -> Model:
        if not hasattr(estimator, "predict") or not hasattr(estimator, "n_features_in_"):
            raise ModelError(f"The artifact holds a {type(estimator).__name__}, not a fitted estimator.")
        fitted_names = cls.fitted_names(estimator)
        classes = getattr(estimator, "classes_", None)
        model = cls(
            meta,
            int(estimator.n_features_in_),
            fitted_names,
            classes,
            classes is not None and hasattr(estimator, "predict_proba"),
        )
        model.estimator = estimator
        model.accelerate = accelerate
        if model.plain and needs_table(estimator):
            model.plain = False
        if not model.plain:
            model.backend = FrameBackend(estimator, model.features, fitted_names)
            model.plans = convert_table(estimator, model.features) if accelerate else []
            return model
        _strip_feature_names(estimator, set())
        model.plans = convert_to_onnx(estimator, model.n_features) if accelerate else []
        model.backend = SklearnBackend(estimator)
        return model

    @staticmethod
    def fitted_names(estimator) -> list[str] | None:
        names = getattr(estimator, "feature_names_in_", None)
        return [str(name) for name in names] if names is not None else None

    @classmethod
    def from_onnx(cls, data: bytes, meta: ModelMeta, accelerate: bool = True) -> Model:
        """An ONNX artifact: one float input [rows, features]; outputs label (or value), then probabilities.

        Classes come from SERVING_MODEL_META (none: a regressor); the schema must name the features.
        The graph's inputs and outputs are read from an ONNX Runtime session (the `onnx` package is
        not needed to serve an ONNX form).
        """
        import onnxruntime

        try:
            session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"The ONNX file could not be read: {exc}") from None
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            raise ModelError("The ONNX model must take exactly one input tensor, [rows, features].")
        dtypes = {"tensor(float)": np.float32, "tensor(double)": np.float64}
        if inputs[0].type not in dtypes:
            raise ModelError("The ONNX model's input must be float or double.")
        shape = inputs[0].shape
        fixed = len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0
        width = shape[1] if fixed else len(meta.schema)
        classes = list(meta.classes) or None
        model = cls(meta, width, None, classes, classes is not None and len(outputs) > 1)
        given = dtypes[inputs[0].type]
        # Answers in float32 anywhere (a cast inside, before trees) are checked to float32's tolerance.
        precision = np.float32 if any(output.type == "tensor(float)" for output in outputs) else given
        model.plans = [OnnxPlan(data, precision, given)]
        model.accelerate = accelerate
        return model

    @property
    def backend_name(self) -> str:
        return self.backend.name + (" + Python linear kernel for one row" if self.row_kernel else "")

    def start(self) -> None:
        """Prepare this process to predict: pick the fastest backends that agree with the reference.

        The reference is scikit-learn for an estimator, and ONNX Runtime itself for an ONNX file.
        """
        if self.estimator is None:
            self._start_onnx()
            return
        if not self.plain:
            self._start_table()
            return
        import sklearn

        # Inputs are validated (finite, right shape) before they reach the model.
        sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
        sample, expected = self._reference()
        found = self._agreeing_onnx(sample, expected)
        if found is not None:
            self.backend = found[1]
        self.plans = []
        if self.accelerate:
            self._adopt_kernel(LinearRowKernel.from_estimator(self.estimator), sample, expected)
        log.info("Predicting with %s.", self.backend_name)

    def verified_onnx(self) -> OnnxPlan | None:
        """The ONNX conversion that gives scikit-learn's answers on the fixed sample, if any."""
        if not self.plain:
            found_table = self._agreeing_table_onnx()
            return found_table[0] if found_table else None
        sample, expected = self._reference()
        found = self._agreeing_onnx(sample, expected)
        return found[0] if found else None

    def _reference(self) -> tuple[np.ndarray, tuple]:
        sample = verification_rows(self.estimator, self.n_features)
        try:
            return sample, self._answers(SklearnBackend(self.estimator), sample)
        except Exception as exc:
            raise ModelError(
                f"The model could not predict on a NumPy array of {self.n_features} columns: {exc}"
            ) from None

    def _agreeing_onnx(self, sample: np.ndarray, expected: tuple) -> tuple[OnnxPlan, OnnxBackend] | None:
        for plan in self.plans:
            try:
                candidate = self._onnx_backend(plan)
                agrees = self._agree(expected, self._answers(candidate, sample), plan.dtype)
            except Exception as exc:
                log.info("ONNX %s session unusable: %s", plan.precision, exc)
                continue
            if agrees:
                return plan, candidate
        return None

    def _onnx_backend(self, plan: OnnxPlan, fallback=None):
        if plan.inputs:
            backend = OnnxTableBackend(plan, self.features, fallback, self.classes)
        else:
            backend = OnnxBackend(plan, self.classes)
        if plan.dtype is np.float32 and self.has_proba and not plan.graph_labels:
            return LabelsFromProbabilities(backend, self.classes)
        return backend

    def _proposed_kernel(self, plan: OnnxPlan) -> LinearRowKernel | None:
        """A linear model's weights: as the portal read them from the graph (SERVING_MODEL_META), or
        read here where the `onnx` package is installed. Checked by `_adopt_kernel` before use."""
        given = self.meta.linear_kernel
        if given is None:
            try:
                return onnx_graph.linear_kernel(plan.onnx_bytes)
            except ImportError:  # the serving-onnx image: no kernel unless the portal gave one
                return None
        weights = given["weights"]
        if len(weights[0]) != self.n_features or len(weights) * self.n_features > LinearRowKernel.MAX_WEIGHTS:
            return None
        return LinearRowKernel(weights, given["intercepts"], given["link"])

    def _adopt_kernel(self, kernel: LinearRowKernel | None, sample: np.ndarray, expected: tuple) -> None:
        """Serve single rows, and small batches, through a linear kernel that gives the
        reference's answers on the sample (each checked on its own)."""
        if kernel is None:
            return
        if self._agree(expected, self._kernel_answers(kernel, sample), np.float64):
            self.row_kernel = kernel
        batches = LinearBatchBackend(kernel, self.classes, self.backend)
        size = batches.MAX_ROWS
        parts = [self._answers(batches, sample[at : at + size]) for at in range(0, len(sample), size)]
        labels = [label for part in parts for label in part[0]]
        proba = np.vstack([part[1] for part in parts]) if self.has_proba else None
        if self._agree(expected, (labels, proba), np.float64):
            self.backend = batches

    def _start_table(self) -> None:
        """A table model: check scikit-learn answers on a sample of accepted rows, then serve the
        first ONNX form that gives its answers on every part of the table check."""
        try:
            self._answers(self.backend, table_sample(self.features))
        except Exception as exc:
            raise ModelError(f"The model could not predict on a table of its features: {exc}") from None
        found = self._agreeing_table_onnx()
        if found is not None:
            self.backend = found[1]
        self.plans = []
        log.info("Predicting with %s on tables.", self.backend_name)

    def _agreeing_table_onnx(self) -> tuple[OnnxPlan, OnnxTableBackend] | None:
        if not self.plans:
            return None
        reference = self.backend if isinstance(self.backend, FrameBackend) else None
        assert reference is not None, "the table check runs before an ONNX form is served"
        parts = [
            (what, rows, self._answers(reference, rows))
            for what, rows in check_parts(self.estimator, self.features)
        ]
        self.refusals = []
        for plan in self.plans:
            try:
                candidate = self._onnx_backend(plan, reference)
                differing = next(
                    (
                        what
                        for what, rows, expected in parts
                        if not self._agree(expected, self._answers(candidate, rows), plan.dtype)
                    ),
                    None,
                )
            except Exception as exc:
                log.info("ONNX %s session unusable: %s", plan.precision, exc)
                self.refusals.append(f"ONNX Runtime could not run the {plan.precision} form ({exc})")
                continue
            if differing is None:
                return plan, candidate
            self.refusals.append(
                f"the {plan.precision} form's answers differ from scikit-learn's on {differing}"
            )
        return None

    def _start_onnx(self) -> None:
        """An ONNX artifact is its own reference: check it runs and names known classes."""
        plan = self.plans[0]
        sample = verification_rows(None, self.n_features)
        try:
            self.backend = self._onnx_backend(plan)
            expected = self._answers(self.backend, sample)
        except Exception as exc:
            raise ModelError(
                f"The ONNX model could not predict on {self.n_features} columns: {exc}"
            ) from None
        unknown = set(expected[0]) - set(self.classes) if self.is_classifier else set()
        if unknown:
            raise ModelError(
                f"The ONNX model answers classes {sorted(unknown)} missing from SERVING_MODEL_META."
            )
        if self.accelerate and plan.dtype is np.float64:
            self._adopt_kernel(self._proposed_kernel(plan), sample, expected)
        self.plans = []
        log.info("Predicting with %s.", self.backend_name)

    def _answers(self, backend, sample: np.ndarray) -> tuple:
        if self.has_proba:
            labels, proba = backend.predict_both(sample)
            return np.asarray(labels).ravel().tolist(), np.asarray(proba, dtype=np.float64)
        return np.asarray(backend.predict(sample)).ravel().tolist(), None

    def _kernel_answers(self, kernel: LinearRowKernel, sample: np.ndarray) -> tuple:
        answers = [kernel.row(row) for row in sample.tolist()]
        if not self.is_classifier:
            return [value for value, _ in answers], None
        labels = [self.classes[index] for index, _ in answers]
        return labels, np.array([proba for _, proba in answers]) if self.has_proba else None

    def _agree(self, expected: tuple, actual: tuple, dtype) -> bool:
        tolerance = 1e-9 if dtype is np.float64 else 1e-5
        if self.is_classifier:
            if expected[0] != actual[0]:
                return False
            return expected[1] is None or np.allclose(expected[1], actual[1], rtol=0, atol=tolerance)
        return np.allclose(np.asarray(expected[0]), np.asarray(actual[0]), rtol=tolerance, atol=tolerance)

    def row(self, values: list, want_proba: bool) -> tuple:
        """(label or value, probabilities or None) for one row given as a list of numbers."""
        if self.row_kernel is not None:
            index, proba = self.row_kernel.row(values)
            if not all(map(math.isfinite, proba if proba is not None else (index,))):
                raise NonFiniteAnswer([0])
            return (self.labels[index] if self.is_classifier else index), proba
        rows = np.array([values], dtype=np.float64 if self.plain else object)
        if want_proba:
            labels, proba = self.both_for(rows)
            return labels[0], proba[0]
        return self.labels_for(rows)[0], None

    def answers(self, rows: np.ndarray, want_proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """The backend's answers, checked finite: class values (classifier) or values (regressor),
        flat, and the probabilities as a float64 array when asked."""
        # A label is only as good as its scores: huge inputs are checked through them.
        if want_proba or (self.has_proba and self.plain and _huge(rows)):
            raw, proba = self.backend.predict_both(rows)
            proba = np.asarray(proba, dtype=np.float64)
            if not math.isfinite(np.add.reduce(proba, axis=None)):
                _check_finite(proba)
            return np.asarray(raw).ravel(), proba if want_proba else None
        raw = np.asarray(self.backend.predict(rows)).ravel()
        if not self.is_classifier:
            _check_finite(raw)
        return raw, None

    def labels_of(self, raw: np.ndarray) -> list:
        """Class values as the labels clients see (a regressor's values as they are), JSON-ready."""
        if not self.is_classifier:
            return raw.tolist()
        label_of = self.label_of
        return [label_of[value] for value in raw.tolist()]

    def labels_for(self, rows: np.ndarray) -> list:
        """Predicted labels (classifier) or values (regressor), one per row, JSON-ready."""
        return self.labels_of(self.answers(rows, False)[0])

    def probabilities_for(self, rows: np.ndarray) -> list[list[float]]:
        proba = np.asarray(self.backend.predict_proba(rows), dtype=np.float64)
        _check_finite(proba)
        return proba.tolist()

    def both_for(self, rows: np.ndarray) -> tuple[list, list[list[float]]]:
        raw, proba = self.answers(rows, True)
        assert proba is not None
        return self.labels_of(raw), proba.tolist()


class NonFiniteAnswer(Exception):
    """Rows whose answer is not a finite number: values so large that the model's arithmetic overflows."""

    def __init__(self, rows: list[int]):
        super().__init__(f"no finite answer for rows {rows}")
        self.rows = rows


# Below this magnitude no fitted model's scores overflow; above it, labels are checked through
# the probabilities behind them.
HUGE = 1e100


def _huge(rows: np.ndarray) -> bool:
    return bool(rows.size) and (rows.max() >= HUGE or rows.min() <= -HUGE)


def _check_finite(answers: np.ndarray) -> None:
    """Raise NonFiniteAnswer naming the rows of `answers` that hold NaN or infinity."""
    finite = np.isfinite(answers)
    if not finite.all():
        bad = ~finite.reshape(len(finite), -1).all(axis=1)
        raise NonFiniteAnswer(np.flatnonzero(bad).tolist())
