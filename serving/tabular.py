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
        table = self.table(rows)
        return self.estimator.predict(table), self.estimator.predict_proba(table)


def table_sample(features: Sequence[Feature], rows: int = 96, seed: int = 0) -> np.ndarray:
    """Rows to check a table model on (see the module's docstring); every value is one it accepts."""
    rng = np.random.default_rng(seed)
    sample = np.empty((rows, len(features)), dtype=object)
    for column, feature in enumerate(features):
        sample[:, column] = _column(feature, rows, rng)
    return sample


def with_missing(sample: np.ndarray, column: int, every: int = 3) -> np.ndarray:
    """The sample with every `every`-th value of `column` missing."""
    changed = sample.copy()
    changed[::every, column] = np.nan
    return changed


def _column(feature: Feature, rows: int, rng) -> list:
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
    if feature.nullable:
        for index in range(rows - 1, 0, -5):  # some missing, never the whole column
            column[index] = np.nan
    return [float(value) if not isinstance(value, str) else value for value in column]


def _far(values: list) -> float:
    """A number beyond every known one."""
    return float(max(abs(float(value)) for value in values) * 2 + 1)
