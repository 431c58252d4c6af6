"""A model that fails on some inputs, as a real one can: a pipeline step that raises for rows with
one exact value in one column. Serving answers those rows with a 500, the others as usual.

    pipeline = make_pipeline(FailsOn(column=2, value=4242.0), LogisticRegression())

An exact value, not a range: the upload's checks and serving's start-up check predict on rows at
many scales, which such a step must pass for the version to be served at all. Saved with skops,
it loads once `tests.faulty.FailsOn` is trusted; the serving process and the upload sandbox import
it from the repository, as they would a team's own module.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class FailsOn(BaseEstimator, TransformerMixin):
    """Pass rows through unchanged; raise ValueError for any row whose `column` is `value`."""

    def __init__(self, column: int = 2, value: float = 4242.0):
        self.column = column
        self.value = value

    def fit(self, X, y=None):
        if hasattr(X, "columns"):
            self.feature_names_in_ = np.asarray([str(name) for name in X.columns], dtype=object)
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        values = np.asarray(X, dtype=float)
        if (values[:, self.column] == self.value).any():
            raise ValueError(f"cannot score {self.value} in column {self.column}")
        return X
