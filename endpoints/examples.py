"""Example rows for a model version's input: what the playground's form and the call snippets start from.

An admin may give them at upload (one row, or a list of a few): they are checked as the serving
process checks a request, each wrong value named. Otherwise they are read from the fitted model,
in the sandbox that inspects it (`endpoints.artifacts.inspect_artifact`), column by column, the
first hint found winning:

- an imputer's statistics (the median, mean or most frequent value it fills in);
- a scaler's centre (StandardScaler's `mean_`, RobustScaler's `center_`, MinMaxScaler's middle),
  with its spread for the other rows;
- an encoder's known values (the first for the first row, the next ones for the others);
- for a model that takes its inputs as they come, where it looks at them: the middle of a tree
  model's split thresholds (quartiles for the other rows), the median of the points a
  nearest-neighbours model or an SVM keeps, the mean of a naive Bayes or discriminant model's
  class means.

A column with no hint gets 0 (False, or the text "text") and the note says how many did. Versions
registered before examples were kept get `schema_examples`: the known values from their schema,
the rest as above. This module imports no Django: the sandbox runs it.

    examples = model_examples(estimator, features)   # in the sandbox
    examples["rows"][0]   # {"sepal_length": 5.8, "sepal_width": 3.0, ...}
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import orjson

from serving.config import NUMERIC_TYPES, Feature

EXAMPLE_ROWS = 3  # rows kept for the playground's batch
MAX_GIVEN_ROWS = 5
NO_HINT_TEXT = "text"


class ExampleError(ValueError):
    """An example row given at upload does not fit the schema; the message names each field."""


@dataclass(frozen=True)
class Hint:
    """Where a column's values are: a centre, values below and above it, and what said so."""

    center: object
    low: object = None
    high: object = None
    source: str = ""
    choices: tuple = ()  # known values (an encoder's), used in turn


def _scalar(value):
    return value.item() if isinstance(value, np.generic) else value


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _round(value: float) -> float:
    """A value as a person would type it: four significant digits."""
    return float(f"{float(value):.4g}")


# Reading the model ---------------------------------------------------------------------------------


def _part_hints(part, positions: list[int]) -> dict[int, Hint]:
    """Hints from one column-wise step; `positions[i]` is the input column of its i-th column."""
    kind = type(part).__name__
    module = type(part).__module__
    hints: dict[int, Hint] = {}

    def each(values, make):
        if values is None:
            return
        for position, column in enumerate(positions[: len(values)]):
            hint = make(position)
            if hint is not None:
                hints[column] = hint

    if module.startswith("sklearn.impute") and hasattr(part, "statistics_"):
        strategy = getattr(part, "strategy", "")
        statistics = part.statistics_

        def imputed(position):
            value = _scalar(statistics[position])
            if isinstance(value, str) or _finite(value):
                return Hint(value, source=f"{kind}'s {strategy} value".replace("_", " "))
            return None

        each(statistics, imputed)
    elif kind == "StandardScaler" and getattr(part, "mean_", None) is not None:
        mean, scale = part.mean_, getattr(part, "scale_", None)
        each(
            mean,
            lambda p: Hint(
                float(mean[p]),
                float(mean[p] - scale[p]) if scale is not None else None,
                float(mean[p] + scale[p]) if scale is not None else None,
                "StandardScaler's mean",
            ),
        )
    elif kind == "RobustScaler" and getattr(part, "center_", None) is not None:
        center, scale = part.center_, getattr(part, "scale_", None)
        each(
            center,
            lambda p: Hint(
                float(center[p]),
                float(center[p] - scale[p] / 2) if scale is not None else None,
                float(center[p] + scale[p] / 2) if scale is not None else None,
                "RobustScaler's median",
            ),
        )
    elif kind == "MinMaxScaler" and hasattr(part, "data_min_"):
        low, high = part.data_min_, part.data_max_
        each(
            low,
            lambda p: Hint(
                float((low[p] + high[p]) / 2),
                float(low[p] + (high[p] - low[p]) / 4),
                float(high[p] - (high[p] - low[p]) / 4),
                "MinMaxScaler's middle",
            ),
        )
    elif hasattr(part, "categories_") and kind in ("OneHotEncoder", "OrdinalEncoder", "TargetEncoder"):

        def known(position):
            values = [_scalar(v) for v in part.categories_[position]]
            values = [v for v in values if isinstance(v, str) or _finite(v)]
            if not values:
                return None
            return Hint(values[0], source=f"{kind}'s known values", choices=tuple(values))

        each(part.categories_, known)
    return hints


def _keeps_columns(part) -> bool:
    """A step whose output column i is its input column i (imputers without indicators, scalers)."""
    module = type(part).__module__
    if module.startswith("sklearn.impute"):
        return not getattr(part, "add_indicator", False)
    return type(part).__name__ in ("StandardScaler", "RobustScaler", "MinMaxScaler", "MaxAbsScaler")


def _keeps_values(part) -> bool:
    """A step that leaves every value it is given as it was (an imputer only fills the missing)."""
    return _keeps_columns(part) and type(part).__module__.startswith("sklearn.impute")


def _final_hints(final, width: int) -> dict[int, Hint]:
    """Hints from an estimator that sees the input columns as they were given."""
    from serving import splits

    hints: dict[int, Hint] = {}
    try:
        thresholds = splits.thresholds(final)
    except Exception:  # an estimator splits reads in a way this version of it does not
        thresholds = {}
    for column, values in thresholds.items():
        if 0 <= column < width and values:
            found = np.asarray([v for v in values if _finite(v)], dtype=float)
            if found.size:
                low, mid, high = np.percentile(found, [25, 50, 75])
                hints[column] = Hint(float(mid), float(low), float(high), "the middle of its tree splits")
    points, what = None, ""
    for attribute, source in (
        ("_fit_X", "the median of the points it keeps"),
        ("support_vectors_", "the median of its support vectors"),
        ("cluster_centers_", "the median of its cluster centres"),
    ):
        if getattr(final, attribute, None) is not None:
            points, what = np.asarray(getattr(final, attribute)), source
            break
    if points is None:
        for attribute in ("theta_", "means_"):  # GaussianNB, discriminant analysis
            if getattr(final, attribute, None) is not None:
                points, what = np.asarray(getattr(final, attribute)), "the mean of its class means"
                break
    if points is not None and points.ndim == 2 and points.shape[1] == width and points.dtype.kind in "fiu":
        low, mid, high = np.percentile(points, [25, 50, 75], axis=0)
        if what == "the mean of its class means":
            mid = points.mean(axis=0)
        for column in range(width):
            hints.setdefault(column, Hint(float(mid[column]), float(low[column]), float(high[column]), what))
    return hints


def _add(hints: dict[int, Hint], column: int, hint: Hint) -> None:
    """Keep the first hint for a column's centre; a later one may still give it a spread (an
    imputer's mean, then the scaler's standard deviation)."""
    found = hints.get(column)
    if found is None:
        hints[column] = hint
    elif found.low is None and hint.low is not None and not isinstance(found.center, str):
        spread_low, spread_high = float(hint.center) - float(hint.low), float(hint.high) - float(hint.center)
        center = float(found.center)
        hints[column] = Hint(
            found.center, center - spread_low, center + spread_high, found.source, found.choices
        )


def model_hints(estimator, names: list[str]) -> dict[int, Hint]:
    """Per input column, where the fitted estimator (or pipeline) says its values lie."""
    from serving.tabular import _column_indices

    steps = [step for _, step in getattr(estimator, "steps", [("", estimator)])]
    final, hints = steps[-1], {}
    values_kept = True
    for step in steps[:-1]:
        if type(step).__name__ == "ColumnTransformer" and hasattr(step, "transformers_"):
            for _, transformer, columns in step.transformers_:
                indices = _column_indices(columns, names)
                if indices is None or isinstance(transformer, str):
                    continue
                for part in [p for _, p in getattr(transformer, "steps", [("", transformer)])]:
                    for column, hint in _part_hints(part, indices).items():
                        _add(hints, column, hint)
                    if not _keeps_columns(part):
                        break
            values_kept = False
            break
        for column, hint in _part_hints(step, list(range(len(names)))).items():
            _add(hints, column, hint)
        if not _keeps_values(step):
            values_kept = False
            if not _keeps_columns(step):
                break
    if values_kept:
        for column, hint in _final_hints(final, len(names)).items():
            _add(hints, column, hint)
    return hints


# Rows ----------------------------------------------------------------------------------------------


def _value(feature: Feature, hint: Hint | None, row: int):
    """The value of `feature` in example row `row` (0: the centre; 1: below it; 2: above it)."""
    choices = hint.choices if hint and hint.choices else tuple(feature.categories)
    if choices and hint is not None and not hint.choices:
        # A centre (an imputer's most frequent value) first, then the other known values.
        center = _typed(feature, hint.center)
        choices = (center, *(value for value in choices if value != center))
    if choices:
        value = choices[row % len(choices)]
        return _typed(feature, value)
    if hint is None:
        return _typed(feature, 0.0 if feature.type != "string" else NO_HINT_TEXT)
    if isinstance(hint.center, str) or feature.type == "string":
        return _typed(feature, hint.center)
    center = float(hint.center)
    low = hint.low if hint.low is not None else center - (abs(center) * 0.25 or 1.0)
    high = hint.high if hint.high is not None else center + (abs(center) * 0.25 or 1.0)
    return _typed(feature, (center, float(low), float(high))[row % 3])


def _typed(feature: Feature, value):
    """`value` as the JSON a request carries for `feature`."""
    if feature.type == "string":
        return value if isinstance(value, str) else str(value)
    if isinstance(value, str):
        return 0 if feature.type == "integer" else (False if feature.type == "boolean" else 0.0)
    if feature.type == "boolean":
        return bool(float(value) >= 0.5)
    if feature.type == "integer":
        return int(round(float(value)))
    return _round(value)


def rows_from_hints(features: list[Feature], hints: dict[int, Hint], count: int = EXAMPLE_ROWS) -> list[dict]:
    return [
        {feature.name: _value(feature, hints.get(column), row) for column, feature in enumerate(features)}
        for row in range(count)
    ]


def _note(origin: str, features: list[Feature], hints: dict[int, Hint]) -> str:
    sources: dict[str, int] = {}
    for column in range(len(features)):
        hint = hints.get(column)
        if hint is not None:
            sources[hint.source] = sources.get(hint.source, 0) + 1
        elif features[column].categories:
            sources["the schema's known values"] = sources.get("the schema's known values", 0) + 1
    missing = len(features) - sum(sources.values())
    parts = [f"{source} ({count})" for source, count in sources.items()]
    if missing:
        parts.append(f"no hint, set to 0 ({missing})")
    return f"{origin}: " + "; ".join(parts) if parts else origin


def model_examples(estimator, features: list[Feature], names: list[str] | None = None) -> dict:
    """Example rows read from the fitted model (see the module's docstring), with where they came from."""
    names = names or [feature.name for feature in features]
    try:
        hints = model_hints(estimator, names)
    except Exception:  # an unusual pipeline: fall back to the schema rather than refuse the upload
        hints = {}
    return {
        "origin": "model",
        "rows": rows_from_hints(features, hints),
        "note": _note("Read from the model", features, hints),
        "by_feature": {features[c].name: h.source for c, h in sorted(hints.items()) if c < len(features)},
    }


def schema_examples(input_schema: list[dict]) -> dict:
    """Example rows from a stored schema alone (a version registered before examples were kept,
    or an ONNX file, which says nothing of its inputs' values)."""
    features = [Feature.from_json(entry, "schema") for entry in input_schema]
    return {
        "origin": "schema",
        "rows": rows_from_hints(features, {}),
        "note": _note("From the schema", features, {}),
        "by_feature": {},
    }


def parse_examples(raw, features: list[Feature]) -> list[dict]:
    """The example row(s) an admin gave: one object of named features, or a list of up to
    MAX_GIVEN_ROWS of them, each checked as the serving process checks a request. Rows come back
    complete, in schema order, a missing nullable value as None. ExampleError names what is wrong."""
    from serving.validation import RequestError, Validator

    rows = [raw] if isinstance(raw, dict) else raw
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        raise ExampleError(
            'Give the example as a JSON object of named features, such as {"age": 39, "sex": "Male"}, '
            f"or a list of up to {MAX_GIVEN_ROWS} such objects."
        )
    if len(rows) > MAX_GIVEN_ROWS:
        raise ExampleError(f"Give at most {MAX_GIVEN_ROWS} example rows (got {len(rows)}).")
    validator = Validator(features, 1, shortcut=False)
    problems = []
    for index, row in enumerate(rows):
        where = "The example" if len(rows) == 1 else f"Example row {index + 1}"
        fields: dict[str, str] = {}
        if "return" in row and not validator.return_is_feature:
            fields["return"] = "unexpected field"
        try:
            validator.parse(orjson.dumps(row))
        except RequestError as exc:
            fields.update(exc.fields or {"row": exc.message})
        except TypeError as exc:
            fields["row"] = f"not JSON ({exc})"
        if fields:
            problems.append(
                f"{where}: " + "; ".join(f"{name}: {problem}" for name, problem in fields.items()) + "."
            )
    if problems:
        raise ExampleError(" ".join(problems))
    return [{feature.name: row.get(feature.name) for feature in features} for row in rows]


def given_examples(raw, features: list[Feature]) -> dict:
    rows = parse_examples(raw, features)
    return {
        "origin": "given",
        "rows": rows,
        "note": "Given at upload" + (f" ({len(rows)} rows)" if len(rows) > 1 else ""),
        "by_feature": {},
    }


def row_table(rows: list[dict], features: list[Feature]) -> np.ndarray:
    """Example rows as the object array the model's table backend takes (NaN for missing)."""
    table = np.empty((len(rows), len(features)), dtype=object)
    for index, row in enumerate(rows):
        for column, feature in enumerate(features):
            value = row.get(feature.name)
            if value is None:
                table[index, column] = math.nan
            elif feature.type == "string":
                table[index, column] = value
            else:
                table[index, column] = float(value)
    return table


def numeric(features: list[Feature]) -> bool:
    return all(feature.type in NUMERIC_TYPES for feature in features)
