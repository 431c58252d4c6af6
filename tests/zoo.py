"""A zoo of the tabular models teams ship, each fitted on data made here (nothing downloaded).

`census()` is a census-like table (as in the GKE census deployment the portal replaces): age,
work class, education, marital status, sex, hours per week, capital gain, with some values
missing and an income label of "<=50K" / ">50K". `census_pipeline()` is the usual pipeline on it:
imputers, a scaler and a one-hot encoder in a ColumnTransformer, then a classifier.
"""

from __future__ import annotations

import numpy as np

NUMERIC = ["age", "hours_per_week", "capital_gain"]
TEXT = ["workclass", "education", "marital_status", "sex"]
CENSUS_FEATURES = ["age", "workclass", "education", "marital_status", "sex", "hours_per_week", "capital_gain"]
WORKCLASS = ["Private", "Self-emp-not-inc", "Self-emp-inc", "Federal-gov", "Local-gov", "State-gov"]
EDUCATION = [
    "HS-grad",
    "Some-college",
    "Bachelors",
    "Masters",
    "Assoc-voc",
    "11th",
    "Doctorate",
    "Prof-school",
]
MARITAL = ["Married-civ-spouse", "Never-married", "Divorced", "Separated", "Widowed"]
SEX = ["Male", "Female"]
LABELS = ["<=50K", ">50K"]


def census(rows: int = 2000, seed: int = 7, missing: float = 0.05, *, target: str = "income"):
    """(features as a DataFrame, the target): income labels as strings, with target="code" as 0
    and 1 (XGBoost takes no others), or with target="score" the number the labels are drawn from
    (for regressors)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(17, 90, rows).astype(float),
            "workclass": rng.choice(WORKCLASS, rows, p=[0.6, 0.1, 0.05, 0.05, 0.1, 0.1]),
            "education": rng.choice(EDUCATION, rows),
            "marital_status": rng.choice(MARITAL, rows),
            "sex": rng.choice(SEX, rows),
            "hours_per_week": np.clip(rng.normal(40, 12, rows).round(), 1, 99),
            "capital_gain": np.where(rng.random(rows) < 0.9, 0.0, rng.exponential(8000, rows).round()),
        }
    )
    score = (
        0.04 * (frame["age"] - 40)
        + 0.05 * (frame["hours_per_week"] - 40)
        + 0.0002 * frame["capital_gain"]
        + frame["education"].isin(["Bachelors", "Masters", "Doctorate", "Prof-school"]) * 1.2
        + (frame["marital_status"] == "Married-civ-spouse") * 1.0
        + (frame["sex"] == "Male") * 0.3
        - 1.5
        + rng.normal(0, 0.8, rows)
    )
    if target == "income":
        labels = np.where(score > 0, LABELS[1], LABELS[0])
    else:
        labels = (score > 0).to_numpy().astype(int) if target == "code" else score.to_numpy()
    frame = frame.astype({column: object for column in TEXT})
    for column in ("workclass", "hours_per_week"):
        frame.loc[rng.random(rows) < missing, column] = np.nan
    return frame[CENSUS_FEATURES], labels


def census_pipeline(final=None, *, encoder: str = "onehot", target: str = "income"):
    """Imputer and scaler for numbers, imputer and encoder for text, then `final` (a logistic
    regression when not given), fitted on `census(target=target)`."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    if encoder == "onehot":
        encode = OneHotEncoder(handle_unknown="ignore")
    else:
        encode = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    columns = ColumnTransformer(
        [
            ("numbers", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), NUMERIC),
            (
                "text",
                Pipeline([("impute", SimpleImputer(strategy="most_frequent")), ("encode", encode)]),
                TEXT,
            ),
        ]
    )
    model = Pipeline(
        [("columns", columns), ("model", final if final is not None else LogisticRegression(max_iter=1000))]
    )
    frame, labels = census(target=target)
    return model.fit(frame, labels)


def frame_of(rows: list[dict]):
    """JSON rows (None for missing) as the DataFrame scikit-learn is asked, for comparing answers."""
    import pandas as pd

    frame = pd.DataFrame([{name: row.get(name) for name in CENSUS_FEATURES} for row in rows])
    return (
        frame.fillna(np.nan).astype({name: float for name in NUMERIC}).astype({name: object for name in TEXT})
    )


def census_schema(*, other_values: bool = True) -> list[dict]:
    """The schema a census pipeline serves with: text columns with their values, missing values
    where the pipeline imputes them."""
    known = {"workclass": WORKCLASS, "education": EDUCATION, "marital_status": MARITAL, "sex": SEX}
    schema = []
    for name in CENSUS_FEATURES:
        if name in known:
            schema.append(
                {
                    "name": name,
                    "type": "string",
                    "categories": sorted(known[name]),
                    "other_values": other_values,
                    "nullable": True,
                }
            )
        else:
            schema.append({"name": name, "type": "number", "nullable": True})
    return schema


def held_out_rows() -> list[dict]:
    """Rows the models never saw, as JSON objects: some with missing values, some with values
    outside the known ones."""
    frame, _ = census(rows=40, seed=99, missing=0.15)
    rows = [
        {name: (None if _missing(value) else _plain(value)) for name, value in record.items()}
        for record in frame.to_dict(orient="records")
    ]
    rows[3]["workclass"] = "Never-worked"  # a value no model has seen
    rows[5]["education"] = "Preschool"
    return rows


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def census_family(name: str):
    """A census pipeline ending in one of the FAMILIES teams ship, fitted."""
    final, options = _families()[name]()
    return census_pipeline(final, **options)


def _families() -> dict:
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.svm import SVC, LinearSVC

    def boosters(module: str, kind: str, **fitting):
        library = __import__(module)
        return getattr(library, kind)(n_estimators=30, max_depth=3, **fitting)

    ordinal, score = {"encoder": "ordinal"}, {"encoder": "ordinal", "target": "score"}
    return {
        "logistic": lambda: (LogisticRegression(max_iter=1000), {}),
        "ridge": lambda: (Ridge(), {"target": "score"}),
        "forest": lambda: (RandomForestClassifier(30, random_state=0), {}),
        "hist-gradient-boosting": lambda: (HistGradientBoostingClassifier(max_iter=30), ordinal),
        "hist-gradient-boosting-regressor": lambda: (HistGradientBoostingRegressor(max_iter=30), score),
        # The encoded text columns (after the three numbers) as native categories.
        "hist-gradient-boosting-categories": lambda: (
            HistGradientBoostingClassifier(max_iter=30, categorical_features=[3, 4, 5, 6]),
            ordinal,
        ),
        "svc": lambda: (SVC(), {}),
        "svc-probabilities": lambda: (SVC(probability=True, random_state=0), {}),
        "linear-svc": lambda: (LinearSVC(), {}),
        "xgboost": lambda: (boosters("xgboost", "XGBClassifier"), {**ordinal, "target": "code"}),
        "xgboost-regressor": lambda: (boosters("xgboost", "XGBRegressor"), score),
        "lightgbm": lambda: (boosters("lightgbm", "LGBMClassifier", verbose=-1), ordinal),
        "lightgbm-regressor": lambda: (boosters("lightgbm", "LGBMRegressor", verbose=-1), score),
    }


FAMILIES = (
    "logistic",
    "ridge",
    "forest",
    "hist-gradient-boosting",
    "hist-gradient-boosting-regressor",
    "hist-gradient-boosting-categories",
    "svc",
    "svc-probabilities",
    "linear-svc",
    "xgboost",
    "xgboost-regressor",
    "lightgbm",
    "lightgbm-regressor",
)
