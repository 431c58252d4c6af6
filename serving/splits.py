"""Where a tree model splits its inputs, and in which precision it compares them.

Check samples put values on and around these splits, where a converted model that compares in
another precision answers differently.
"""

from __future__ import annotations

import numpy as np


def trees(estimator) -> list:
    """Fitted scikit-learn decision trees of a tree or forest (they compare in float32)."""
    if hasattr(estimator, "tree_"):
        return [estimator]
    return [member for member in np.ravel(getattr(estimator, "estimators_", [])) if hasattr(member, "tree_")]


def library(estimator) -> str:
    return type(estimator).__module__.split(".")[0]


def compares_in_float32(estimator) -> bool:
    """scikit-learn's trees and XGBoost round inputs to float32 before comparing them with splits;
    histogram gradient boosting and LightGBM compare float64 inputs with float64 splits."""
    return bool(trees(estimator)) or library(estimator) == "xgboost"


def native_categories(estimator) -> bool:
    """Whether a histogram gradient boosting model splits on categories (sets, not thresholds)."""
    flags = getattr(estimator, "is_categorical_", None)
    return flags is not None and bool(np.any(flags))


def thresholds(estimator) -> dict[int, list[float]]:
    """Split thresholds per input column of a tree model; empty for anything else."""
    found: dict[int, list[float]] = {}

    def add(features, values) -> None:
        for feature, value in zip(features, values, strict=True):
            found.setdefault(int(feature), []).append(float(value))

    for tree in trees(estimator):
        nodes = tree.tree_.feature >= 0
        add(tree.tree_.feature[nodes], tree.tree_.threshold[nodes])
    for predictors in getattr(estimator, "_predictors", None) or ():
        for predictor in predictors:
            nodes = predictor.nodes
            numeric = (nodes["is_leaf"] == 0) & (nodes["is_categorical"] == 0)
            add(nodes["feature_idx"][numeric], nodes["num_threshold"][numeric])
    if library(estimator) == "xgboost":
        frame = estimator.get_booster().trees_to_dataframe()
        frame = frame[frame["Feature"] != "Leaf"]
        names = estimator.get_booster().feature_names
        columns = [names.index(name) if names else int(name[1:]) for name in frame["Feature"]]
        add(columns, frame["Split"])
    if library(estimator) == "lightgbm":
        frame = estimator.booster_.trees_to_dataframe()
        frame = frame[frame["split_feature"].notna() & (frame["decision_type"] == "<=")]
        names = estimator.booster_.feature_name()
        add([names.index(name) for name in frame["split_feature"]], frame["threshold"])
    return found


def near(values: np.ndarray, rng, count: int) -> np.ndarray:
    """`count` values on, beside (in float32 and in float64) and just off the given splits."""
    picked = rng.choice(values, count)
    as_float32 = picked.astype(np.float32)
    variants = [
        picked,
        as_float32.astype(np.float64),
        np.nextafter(as_float32, np.float32(np.inf)).astype(np.float64),
        np.nextafter(as_float32, np.float32(-np.inf)).astype(np.float64),
        np.nextafter(picked, np.inf),
        np.nextafter(picked, -np.inf),
        picked * (1 + 1e-9),
        picked * (1 - 1e-9),
    ]
    return np.choose(rng.integers(0, len(variants), count), variants)
