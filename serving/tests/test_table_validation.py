"""The column-at-a-time check of a table's batch rows takes exactly what the value-by-value
check takes, converted the same way, and leaves everything else to it (which names each value)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from serving.config import Feature
from serving.validation import Validator

FEATURES = (
    Feature("age", "number", nullable=True),
    Feature("children", "integer"),
    Feature("owner", "boolean", nullable=True),
    Feature("city", "string", categories=("Lyon", "Paris"), other_values=True, nullable=True),
    Feature("plan", "string", categories=("basic", "pro"), other_values=False),
    Feature("tier", "number", categories=(1.0, 2.0), other_values=False, nullable=True),
)
VALIDATOR = Validator(FEATURES, max_rows=100)

values = st.sampled_from(
    [None, True, False, 0, 1, 2, -3, 2**1030, 0.5, 1.0, 2.0, 2.5, -0.0, 1e308, math.inf, math.nan]
    + ["Lyon", "Paris", "Nice", "basic", "pro", "gold", "", [1], {}]
)


def good_value(feature: Feature):
    """Values the feature takes, to make well-formed rows likely."""
    if feature.type == "string":
        choices = list(feature.categories) + (["Nice"] if feature.other_values else [])
    elif feature.categories:
        choices = list(feature.categories)
    elif feature.type == "boolean":
        choices = [True, False, 0, 1]
    elif feature.type == "integer":
        choices = [0, 2, 3.0]
    else:
        choices = [0.5, 7, -2.25]
    return st.sampled_from(choices + ([None] if feature.nullable else []))


good_row = st.tuples(*(good_value(feature) for feature in FEATURES)).map(list)


def near_miss(feature: Feature) -> list:
    """Values one check of the feature's own refuses."""
    if feature.type == "string":
        return [3, True, "gold"] if not feature.other_values else [3, False, [1]]
    misses = ["1", math.inf, math.nan, 2**1030, {}]
    if feature.type == "boolean":
        misses += [2, 0.5]
    else:
        misses.append(True)
    if feature.type == "integer":
        misses.append(2.5)
    if feature.categories:
        misses.append(3.0)
    if not feature.nullable:
        misses.append(None)
    return misses


@st.composite
def list_row(draw) -> list:
    """A well-formed row, or one with a wrong value in it (one its feature refuses, or any)."""
    row = draw(good_row)
    for column in draw(st.lists(st.integers(0, len(FEATURES) - 1), max_size=1)):
        row[column] = draw(st.one_of(st.sampled_from(near_miss(FEATURES[column])), values))
    return row


list_row = list_row()
names = [feature.name for feature in FEATURES]
table = st.one_of(
    st.lists(
        st.one_of(list_row, list_row.map(lambda row: dict(zip(names, row, strict=True)))),
        min_size=1,
        max_size=4,
    ),
    st.lists(
        st.one_of(
            list_row,
            list_row.map(lambda row: row[:-1]),
            list_row.map(lambda row: {**dict(zip(names[:-1], row, strict=False)), "extra": 1}),
            st.integers(),
        ),
        min_size=1,
        max_size=3,
    ),
)


def same(left, right) -> bool:
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left):
        return math.isnan(right)
    return type(left) is type(right) and left == right


@settings(max_examples=400)
@given(table)
def test_the_column_check_takes_what_the_value_check_takes_and_converts_it_alike(rows):
    fast = VALIDATOR._fast_table(rows)
    fields: dict[str, str] = {}
    checked = VALIDATOR._checked_rows(rows, "inputs", fields)
    if fast is None:
        return
    assert not fields, f"taken by the column check, refused by the value check: {fields}"
    assert fast.shape == checked.shape
    for got, expected in zip(fast.ravel().tolist(), checked.ravel().tolist(), strict=True):
        assert same(got, expected), (got, expected)


def test_well_formed_rows_of_lists_and_objects_take_the_column_check():
    rows = [[30.5, 2, True, "Nice", "pro", None], [None, 0, None, None, "basic", 2.0]]
    named = [dict(zip(names, row, strict=True)) for row in rows]
    for given_rows in (rows, named):
        taken = VALIDATOR._fast_table(given_rows)
        assert taken is not None
        assert taken[0].tolist() == [30.5, 2.0, 1.0, "Nice", "pro", taken[0][5]]
        assert math.isnan(taken[0][5]) and math.isnan(taken[1][0]) and math.isnan(taken[1][3])


def test_a_wrong_value_leaves_the_batch_to_the_value_check_which_names_it():
    rows = [[30.5, 2, True, "Nice", "gold", None]]
    assert VALIDATOR._fast_table(rows) is None
    fields: dict[str, str] = {}
    VALIDATOR._checked_rows(rows, "inputs", fields)
    assert list(fields) == ["inputs/0/4"] and "'basic', 'pro'" in fields["inputs/0/4"]


def test_every_wrong_value_of_every_feature_is_left_to_the_value_check():
    row = [30.5, 2, True, "Nice", "pro", None]
    for column, feature in enumerate(FEATURES):
        for value in near_miss(feature):
            rows = [row[:column] + [value] + row[column + 1 :], row]
            fields: dict[str, str] = {}
            VALIDATOR._checked_rows(rows, "inputs", fields)
            assert list(fields) == [f"inputs/0/{column}"], (feature.name, value)
            assert VALIDATOR._fast_table(rows) is None, (feature.name, value)
