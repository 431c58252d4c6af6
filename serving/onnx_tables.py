"""ONNX forms of models fitted on tables: one graph input per column, checked like plain models.

Text columns are string tensors (a missing value is fed as MISSING_TEXT, which the converted
SimpleImputer fills); numbers are float64 (or float32) tensors with NaN for missing. The check
compares the form with scikit-learn on the table sample, on it with each nullable column missing
in turn, and on rows on and around the splits of a tree model's numeric columns; the first part
that differs names why the form is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from serving import splits
from serving.backends import (
    OnnxBackend,
    OnnxPlan,
    _chain_through_float32,
    _final_estimator,
    _steps_before,
    boundary_rows,
    labels_from_arithmetic,
    plan_for,
    to_onnx,
)
from serving.config import NUMERIC_TYPES, Feature
from serving.onnx_converters import MISSING_TEXT
from serving.tabular import FrameBackend, table_sample, with_missing

log = logging.getLogger("serving.onnx_tables")

SPLIT_ROWS = 128


def convert_table(estimator, features: Sequence[Feature]) -> list[OnnxPlan]:
    """Candidate ONNX forms of a table model, most faithful first (see convert_to_onnx for the
    precision rules); none where a converter is missing or not exact by construction."""
    from serving import onnx_converters

    onnx_converters.register()
    final = _final_estimator(estimator)
    if splits.native_categories(final):
        return []
    text = tuple(feature.type == "string" for feature in features)

    def convert(model, dtype, final_width: int | None = None):
        from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

        numbers = DoubleTensorType if dtype is np.float64 else FloatTensorType
        if final_width is not None:
            types = [("input", FloatTensorType([None, final_width]))]
        else:
            types = [
                (feature.name, StringTensorType([None, 1]) if is_text else numbers([None, 1]))
                for feature, is_text in zip(features, text, strict=True)
            ]
        try:
            return to_onnx(model, final, initial_types=types)
        except Exception as exc:  # any converter gap means "serve with scikit-learn"
            log.info("No %s ONNX conversion for %s (%s).", np.dtype(dtype).name, type(model).__name__, exc)
            return None

    candidates = []
    if splits.compares_in_float32(final):
        before = _steps_before(estimator)
        steps = convert(before, np.float64) if before is not None else None
        trees = convert(final, np.float32, final.n_features_in_) if steps is not None else None
        if trees is not None:
            try:
                candidates.append((_chain_through_float32(steps, trees), np.float64))
            except Exception as exc:
                log.info("The steps and trees did not chain into one ONNX graph (%s).", exc)
        elif before is None:
            candidates.append((convert(estimator, np.float32), np.float32))
    else:
        for dtype in (np.float64, np.float32):
            candidates.append((convert(estimator, dtype), dtype))
    return [plan_for(onx, given, final, text) for onx, given in candidates if onx is not None]


class OnnxTableBackend(OnnxBackend):
    """ONNX Runtime fed a table model's validated rows (object arrays), one tensor per column.

    Rows holding MISSING_TEXT as a real value go to scikit-learn (`fallback`), which tells it
    from a missing one.
    """

    def __init__(self, plan: OnnxPlan, features: Sequence[Feature], fallback, classes: list | None = None):
        super().__init__(plan, classes)
        names = [feature.name for feature in features]
        self.fallback = fallback
        self.columns = [
            (tensor.name, names.index(tensor.name), tensor.type == "tensor(string)")
            for tensor in self.session.get_inputs()
        ]

    def _feed(self, rows: np.ndarray) -> dict | None:
        feed = {}
        for name, column, text in self.columns:
            values = rows[:, column]
            if text:
                listed = values.tolist()
                if MISSING_TEXT in listed:
                    return None
                strings = [value if value.__class__ is str else MISSING_TEXT for value in listed]
                feed[name] = np.array(strings, dtype=object).reshape(-1, 1)
            else:
                feed[name] = values.astype(self.dtype).reshape(-1, 1)
        return feed

    def _run(self, rows: np.ndarray) -> list:
        feed = self._feed(rows)
        if feed is None:
            raise _TakenAsMissing
        return self.session.run(None, feed)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        try:
            return super().predict(rows)
        except _TakenAsMissing:
            return self.fallback.predict(rows)

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        try:
            return super().predict_proba(rows)
        except _TakenAsMissing:
            return self.fallback.predict_proba(rows)

    def predict_both(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            return super().predict_both(rows)
        except _TakenAsMissing:
            return self.fallback.predict_both(rows)


class _TakenAsMissing(Exception):
    """A row holds the text that stands for a missing value."""


def check_parts(estimator, features: Sequence[Feature]) -> list[tuple[str, np.ndarray]]:
    """(what the rows are, rows) a table model's ONNX form must answer as scikit-learn does."""
    sample = table_sample(features)
    parts = [("the check sample (every known value, and unseen ones where taken)", sample)]
    for column, feature in enumerate(features):
        if feature.nullable:
            parts.append((f"rows with a missing {feature.name}", with_missing(sample, column)))
    near = _split_rows(estimator, features)
    if near is not None:
        parts.append(("rows on and around its splits", near))
    if labels_from_arithmetic(estimator):
        numeric = [index for index, feature in enumerate(features) if feature.type in NUMERIC_TYPES]
        names = getattr(estimator, "feature_names_in_", None)
        backend = FrameBackend(
            estimator, features, [str(name) for name in names] if names is not None else None
        )
        edge = boundary_rows(backend.predict, table_sample(features, missing=False), numeric)
        if edge is not None:
            parts.append(("rows on its decision boundary", edge))
    return parts


def _split_rows(estimator, features: Sequence[Feature]) -> np.ndarray | None:
    """The table sample with numeric columns on and around the final estimator's splits, mapped
    back through passthrough, imputer and scaler steps (columns behind others keep their values)."""
    final = _final_estimator(estimator)
    per_feature = splits.thresholds(final)
    if not per_feature:
        return None
    names = [feature.name for feature in features]
    mapping = _output_columns(estimator, names)
    if mapping is None:
        return None
    rng = np.random.default_rng(1)
    rows = np.concatenate([table_sample(features, seed=seed) for seed in (1, 2)])[:SPLIT_ROWS]
    aimed = False
    for output, values in per_feature.items():
        if output not in mapping:
            continue
        column, scale, offset = mapping[output]
        if features[column].type == "string":
            continue
        rows[:, column] = (splits.near(np.asarray(values), rng, len(rows)) * scale + offset).tolist()
        aimed = True
    return rows if aimed else None


def _output_columns(estimator, names: list[str]) -> dict[int, tuple[int, float, float]] | None:
    """For the final estimator's input columns that are an input column scaled: output -> (input
    column, scale, offset), so that input = output * scale + offset."""
    from sklearn.compose import ColumnTransformer

    before = [step for _, step in getattr(estimator, "steps", [])[:-1] if step not in (None, "passthrough")]
    if not before:
        return {index: (index, 1.0, 0.0) for index in range(len(names))}
    if len(before) != 1 or not isinstance(before[0], ColumnTransformer):
        return None
    columns = before[0]
    found: dict[int, tuple[int, float, float]] = {}
    for name, transformer, selected in columns.transformers_:
        if name not in columns.output_indices_ or transformer == "drop":
            continue
        start = columns.output_indices_[name].start
        indices = [names.index(item) if isinstance(item, str) else int(item) for item in np.ravel(selected)]
        affine = _affine(transformer, len(indices))
        if affine is None:
            continue
        for position, column in enumerate(indices):
            found[start + position] = (column, affine[0][position], affine[1][position])
    return found


def _affine(transformer, width: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, offset) per column when the transformer only fills and scales its columns."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    scale, offset = np.ones(width), np.zeros(width)
    steps = [step for _, step in getattr(transformer, "steps", [("", transformer)])]
    for step in steps:
        if step == "passthrough" or (isinstance(step, SimpleImputer) and not step.add_indicator):
            continue
        if type(step) is not StandardScaler:
            return None
        step_scale = step.scale_ if step.scale_ is not None else 1.0
        step_mean = step.mean_ if step.mean_ is not None else 0.0
        # x = (y * step_scale + step_mean), and the earlier steps map x back
        offset = offset + scale * step_mean
        scale = scale * step_scale
    return scale, offset
