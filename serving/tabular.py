"""Models fitted on tables: text columns, closed sets of values, missing values.

Their validated rows are object arrays (floats, strings, NaN for missing); `FrameBackend` hands
them to the estimator as the pandas DataFrame it was fitted on (column names and dtypes), or as the
object array itself when it was fitted without names. `table_sample` makes the rows such a model is
checked on: numbers at many scales, every known value of each closed set (and one it has never
seen, where it takes others), and missing values where they are allowed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from serving.config import NUMERIC_TYPES, Feature

UNSEEN_TEXT = "a value the model has never seen"


def needs_table(estimator) -> bool:
    """Whether the estimator picks its columns by name (a ColumnTransformer, anywhere in it)."""
    from sklearn.compose import ColumnTransformer

    seen: set[int] = set()
    stack = [estimator]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ColumnTransformer):
            return True
        for _, step in getattr(item, "steps", ()):
            stack.append(step)
        for _, transformer, _ in getattr(item, "transformers", ()):
            stack.append(transformer)
    return False


class FrameBackend:
    """scikit-learn on the table the estimator was fitted on."""

    name = "scikit-learn"

    def __init__(self, estimator, features: Sequence[Feature], fitted_names: list[str] | None):
        self.estimator = estimator
        self.names = fitted_names
        self.numeric = [index for index, feature in enumerate(features) if feature.type in NUMERIC_TYPES]

    def table(self, rows: np.ndarray):
        if self.names is None:
            return rows
        import pandas as pd

        numeric = set(self.numeric)
        return pd.DataFrame(
            {
                name: rows[:, index].astype(np.float64) if index in numeric else rows[:, index]
                for index, name in enumerate(self.names)
            }
        )

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.estimator.predict(self.table(rows))

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return self.estimator.predict_proba(self.table(rows))

    def predict_both(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and probabilities, the table taken through a pipeline's steps once for both."""
        table = self.table(rows)
        steps = getattr(self.estimator, "steps", None)
        if steps:
            final = steps[-1][1]
            table = self.estimator[:-1].transform(table) if len(steps) > 1 else table
            return final.predict(table), final.predict_proba(table)
        return self.estimator.predict(table), self.estimator.predict_proba(table)


def table_sample(
    features: Sequence[Feature], rows: int = 96, seed: int = 0, *, missing: bool = True
) -> np.ndarray:
    """Rows to check a table model on (see the module's docstring); every value is one it accepts.
    Without `missing`, no value is missing (`with_missing` then takes one column's out)."""
    rng = np.random.default_rng(seed)
    sample = np.empty((rows, len(features)), dtype=object)
    for column, feature in enumerate(features):
        sample[:, column] = _column(feature, rows, rng, missing)
    return sample


def with_missing(sample: np.ndarray, column: int, every: int = 3) -> np.ndarray:
    """The sample with every `every`-th value of `column` missing."""
    changed = sample.copy()
    changed[::every, column] = np.nan
    return changed


def _column(feature: Feature, rows: int, rng, missing: bool) -> list:
    if feature.categories:
        values = list(feature.categories)
        if feature.other_values:
            values.append(UNSEEN_TEXT if feature.type == "string" else _far(values))
    elif feature.type == "string":
        values = [UNSEEN_TEXT, "", "A", "some text"]
    elif feature.type == "boolean":
        values = [0.0, 1.0]
    else:
        scales = rng.choice([0.1, 1.0, 10.0, 100.0, 1000.0], rows)
        drawn = rng.normal(0.0, 1.0, rows) * scales
        values = np.round(drawn).tolist() if feature.type == "integer" else drawn.tolist()
        values[0] = 0.0
    column = [values[index % len(values)] for index in range(rows)]
    rng.shuffle(column)
    if feature.nullable and missing:
        for index in range(rows - 1, 0, -5):  # some missing, never the whole column
            column[index] = np.nan
    return [float(value) if not isinstance(value, str) else value for value in column]


def _far(values: list) -> float:
    """A number beyond every known one."""
    return float(max(abs(float(value)) for value in values) * 2 + 1)


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _column_indices(transformer_columns, names: list[str]) -> list[int] | None:
    """The input columns a ColumnTransformer entry takes, as indices (None when it cannot say)."""
    columns = transformer_columns
    if isinstance(columns, str | int):
        columns = [columns]
    try:
        columns = list(columns)
    except TypeError:
        return None
    if all(isinstance(column, str) for column in columns):
        return [names.index(column) for column in columns if column in names]
    if all(isinstance(column, int | np.integer) and not isinstance(column, bool) for column in columns):
        return [int(column) for column in columns]
    return None


def _handles_missing_natively(final) -> bool:
    """Estimators documented to treat NaN as missing: histogram gradient boosting, XGBoost, LightGBM."""
    kind = type(final)
    return kind.__name__.startswith("HistGradientBoosting") or kind.__module__.split(".")[0] in (
        "xgboost",
        "lightgbm",
    )


def infer_features(estimator, names: list[str]) -> list[Feature]:
    """What the fitted estimator says about each input column: text with the values its encoder
    knows (and whether it takes others), or numbers; missing where an imputer comes first, where
    the encoder learnt missing as a value, or where the final estimator handles NaN itself.

    These are proposals: missing values are confirmed on sample rows before they are promised."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    steps = [step for _, step in getattr(estimator, "steps", [("", estimator)])]
    final = steps[-1]
    native = _handles_missing_natively(final)
    found = {index: Feature(name, nullable=native) for index, name in enumerate(names)}
    for step in steps[:-1]:
        if _is_imputer(step):
            found = {index: replace_feature(feature, nullable=True) for index, feature in found.items()}
        if not isinstance(step, ColumnTransformer):
            continue
        for _, transformer, columns in step.transformers_:
            indices = _column_indices(columns, names)
            if indices is None or transformer == "drop":
                continue
            chain = [part for _, part in getattr(transformer, "steps", [("", transformer)])]
            imputed = False
            for part in chain:
                if _is_imputer(part):
                    imputed = True
                    continue
                if isinstance(part, OneHotEncoder | OrdinalEncoder) and hasattr(part, "categories_"):
                    takes_others = (
                        part.handle_unknown != "error"
                        if isinstance(part, OneHotEncoder)
                        else part.handle_unknown == "use_encoded_value"
                    )
                    for position, index in enumerate(indices[: len(part.categories_)]):
                        values = [_scalar(value) for value in part.categories_[position]]
                        known = [value for value in values if not _is_missing(value)]
                        text = bool(known) and all(isinstance(value, str) for value in known)
                        found[index] = Feature(
                            names[index],
                            "string" if text else "number",
                            tuple(sorted(known, key=str)),
                            takes_others,
                            imputed or len(known) < len(values) or found[index].nullable,
                        )
                break  # what comes after an encoder no longer maps to input columns
            if imputed:
                for index in indices:
                    found[index] = replace_feature(found[index], nullable=True)
        break  # columns after the first ColumnTransformer are its outputs, not the inputs
    return [found[index] for index in range(len(names))]


def replace_feature(feature: Feature, **changes) -> Feature:
    from dataclasses import replace

    return replace(feature, **changes)


def _is_imputer(step) -> bool:
    return type(step).__module__.startswith("sklearn.impute")


def _scalar(value):
    return value.item() if isinstance(value, np.generic) else value
