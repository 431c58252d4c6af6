"""Turn a request body into a float64 array of rows, or say exactly which fields are wrong.

Three body forms are told apart by shape (in all of them a feature is found by name, or by its
place in the schema's order):
  named:     {"sepal_length": 5.1, ...}               one row, features by name
  inputs:    {"inputs": [[5.1, ...], ...]}            rows as lists (or named objects)
  instances: {"instances": [[...] or {...}, ...]}     Vertex AI / KServe v1 style
`return` ("label" | "probabilities" | "both") may sit beside them, or in the query string.

Typing rules (documented in the OpenAPI description too):
  number:  JSON integers and floats; booleans are refused ("expected a number, not a boolean").
  integer: JSON integers, and floats with no fractional part (3.0); booleans are refused.
  boolean: true / false, and the numbers 0 and 1.
  string:  JSON strings; a number is refused ("expected a string").
  NaN and ±Infinity (which some encoders emit) are refused as "expected a finite number".
  A feature with a closed set of values (`categories`, `other_values` false) refuses others,
  naming the ones it knows. `null` means a missing value where the feature is nullable (as does
  leaving a nullable feature out of a named row), and is refused elsewhere.
Field paths name the offending value: "petal_width", "inputs/3/2", "instances/0/petal_width".

Rows of plain numbers come out as float64 arrays; rows of a schema with strings, closed sets or
missing values as object arrays (floats, strings, and NaN for missing), which the model turns into
the table it was fitted on.

Batches of list rows of plain numbers, the usual large body, take a shortcut when nothing in them
is unusual:
simdjson parses the body and hands over every number as one float64 buffer, which is then shown
to be exactly `rows` lists of `width` numbers (see `Validator._list_rows`). Anything else, or any
doubt, goes the detailed way: orjson, then every value checked and every bad one named by path.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import chain

import numpy as np
import orjson

from serving.config import Feature

try:
    import simdjson
except ImportError:  # the detailed path answers everything on its own
    simdjson = None

RETURN_MODES = ("label", "probabilities", "both")
BATCH_KEYS = ("inputs", "instances")
MAX_REPORTED_FIELDS = 1000
# How far into the body the batch key must appear for the simdjson shortcut to be tried.
BATCH_KEY_WITHIN = 64
OPEN_BRACKET = ord("[")


class RequestError(Exception):
    """A client mistake: `status` is the HTTP status, `fields` maps paths to what is wrong."""

    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields

    def body(self) -> dict:
        if self.fields is None:
            return {"error": self.message}
        return {"error": self.message, "fields": self.fields}


@dataclass(frozen=True)
class Parsed:
    rows: np.ndarray | list  # float64 array (n, n_features), or one row as a list (named form)
    form: str  # named | inputs | instances
    mode: str | None  # None when the caller did not choose


def load_json(body: bytes) -> tuple[object, bool]:
    """Parse JSON; say whether its numbers are sure to be finite.

    orjson refuses NaN and Infinity (not JSON), and yields ints that fit 64 bits and finite
    floats. Some encoders emit NaN anyway, so such bodies are parsed again, leniently, for
    validation to name the offending fields.
    """
    try:
        return orjson.loads(body), True
    except orjson.JSONDecodeError as exc:
        first_error = exc
    try:
        return json.loads(body), False
    except (ValueError, RecursionError):
        raise RequestError(400, f"The body is not valid JSON: {first_error}") from None


def to_number(value, kind: str) -> tuple[float, str | None]:
    """The value as a float, or an error message for it."""
    value_type = type(value)
    if kind == "boolean":
        if value_type is bool:
            return float(value), None
        if value_type in (int, float) and value in (0, 1):
            return float(value), None
        return 0.0, "expected a boolean (true or false)"
    if value_type is bool:
        return 0.0, f"expected {'an integer' if kind == 'integer' else 'a number'}, not a boolean"
    if value_type is not int and value_type is not float:
        return 0.0, "expected an integer" if kind == "integer" else "expected a number"
    try:
        number = float(value)
    except OverflowError:
        return 0.0, "expected a finite number"
    if not math.isfinite(number):
        return 0.0, "expected a finite number"
    if kind == "integer" and not number.is_integer():
        return 0.0, "expected an integer"
    return number, None


MISSING_VALUE = math.nan  # what a missing value becomes in the rows handed to the model
SHOWN_CATEGORIES = 20


def to_value(value, feature: Feature, known: frozenset | None) -> tuple[object, str | None]:
    """The value as the model takes it (a float, a string, or NaN when missing), or what is wrong.

    `known` is the feature's closed set of values (None when it takes any)."""
    if value is None:
        return MISSING_VALUE, None if feature.nullable else "expected a value: this feature cannot be missing"
    if feature.type == "string":
        if type(value) is not str:
            return MISSING_VALUE, "expected a string"
        converted: object = value
    else:
        converted, problem = to_number(value, feature.type)
        if problem:
            return converted, problem
    if known is not None and converted not in known:
        return converted, unknown_value_message(value, feature)
    return converted, None


def unknown_value_message(value, feature: Feature) -> str:
    shown = ", ".join(map(repr, feature.categories[:SHOWN_CATEGORIES]))
    more = (
        f" and {len(feature.categories) - SHOWN_CATEGORIES} more"
        if len(feature.categories) > SHOWN_CATEGORIES
        else ""
    )
    return f"unknown value {value!r}: the model knows {shown}{more}"


class Validator:
    """Validates bodies against one model's feature schema."""

    def __init__(
        self, features: list[Feature] | tuple[Feature, ...], max_rows: int, *, shortcut: bool = True
    ):
        self.features = tuple(features)
        self.names = [feature.name for feature in features]
        self.kinds = [feature.type for feature in features]
        self.max_rows = max_rows
        self.width = len(features)
        self.name_set = frozenset(self.names)
        # Plain numbers take the fast paths into float64; anything else goes value by value.
        self.plain = all(feature.plain for feature in features)
        self.known = [
            frozenset(feature.categories) if feature.categories and not feature.other_values else None
            for feature in features
        ]
        self.all_numbers = self.plain and all(kind == "number" for kind in self.kinds)
        self.integer_columns = [index for index, kind in enumerate(self.kinds) if kind == "integer"]
        self.boolean_columns = [index for index, kind in enumerate(self.kinds) if kind == "boolean"]
        self.return_is_feature = "return" in self.name_set
        # Batch keys that are not also feature names, with their quoted form to look for.
        self.batch_keys = [(key, b'"%s"' % key.encode()) for key in BATCH_KEYS if key not in self.name_set]
        self.simdjson = simdjson.Parser() if simdjson is not None and shortcut and self.plain else None

    def parse(self, body: bytes, query_mode: str | None = None) -> Parsed:
        if self.simdjson is not None and body[:1] == b"{":
            # Both batch keys start with "in; the first such string in a batch body is its key.
            at = body.find(b'"in')
            for key, quoted in self.batch_keys if 0 < at < BATCH_KEY_WITHIN else ():
                if body.startswith(quoted, at):
                    parsed = self._list_rows(body, key, query_mode)
                    if parsed is not None:
                        return parsed
                    break
        document, finite = load_json(body)
        if type(document) is not dict:
            raise RequestError(
                422, "The body must be a JSON object: named features, or inputs / instances.", {}
            )
        mode = query_mode
        fields: dict[str, str] = {}
        if "return" in document and not self.return_is_feature:
            mode = document["return"]
        if mode is not None and mode not in RETURN_MODES:
            fields["return"] = f"expected one of {', '.join(RETURN_MODES)}"
        batch_key = next((key for key in BATCH_KEYS if key in document and key not in self.name_set), None)
        if batch_key is None:
            fast = self._named_fast(document) if finite and not fields else None
            rows = fast if fast is not None else self._named(document, fields)
        else:
            rows = self._batch(body, document, batch_key, fields)
        if fields:
            raise invalid(fields)
        return Parsed(rows, batch_key or "named", mode)

    def _list_rows(self, body: bytes, key: str, query_mode: str | None) -> Parsed | None:
        """A batch of well-formed list rows, read by simdjson; None for anything else.

        What the detailed path would accept, and how this proves it (None at the first doubt):
        - The body is an object holding `key` and nothing else, or `key` and "return" (a known
          mode or null, unless "return" is a feature): the entry count rules out duplicates.
        - `as_buffer` turns every number under `key` into one float64 (ints, floats, exactly as
          float() does) and refuses booleans, strings, nulls and objects (TypeError) and numbers
          out of range (ValueError); integers beyond 64 bits fail to parse (RuntimeError).
        - It does flatten nested lists, so: each of the `rows` elements has `width` entries
          (len() fails on a number), and the body holds exactly rows + 1 "[": one for the list of
          rows, one per row, none nested. The only strings in the body are the keys and the mode,
          none of which contains "[", so every "[" counted is structure.
        - The values fit their columns' types (`_fits_types`). They are finite: simdjson refuses
          numbers out of range (above), and NaN and Infinity (below).
        simdjson refuses NaN and Infinity and any syntax orjson refuses, except a leading BOM
        (the body must start with "{" to get here).
        """
        width = self.width
        try:
            document = self.simdjson.parse(body)
        except ValueError:
            return None
        except RuntimeError:  # an integer beyond 64 bits, or (never expected) a parser still in use
            self.simdjson = simdjson.Parser()
            return None
        try:
            if type(document) is not simdjson.Object or key not in document:
                return None
            mode = query_mode
            entries = len(document)
            if entries == 2 and "return" in document and not self.return_is_feature:
                mode = document["return"]
            elif entries != 1:
                return None
            if mode is not None and (type(mode) is not str or mode not in RETURN_MODES):
                return None
            rows = document[key]
            if type(rows) is not simdjson.Array:
                return None
            count = len(rows)
            if not 0 < count <= self.max_rows:
                return None
            flat = rows.as_buffer(of_type="d")
            for row in rows:
                if len(row) != width:
                    return None
        except (TypeError, ValueError, RuntimeError):
            return None
        finally:
            # Views into the parser must be gone before it parses the next body.
            document = rows = row = None
        array = np.frombuffer(flat, np.float64)
        if array.size != count * width:
            return None
        if np.count_nonzero(np.frombuffer(body, np.uint8) == OPEN_BRACKET) != count + 1:
            return None
        array = array.reshape(count, width)
        return Parsed(array, key, mode) if self._fits_types(array) else None

    def _named_fast(self, document: dict) -> list | None:
        """The row of a well-formed all-number body, or None to check it field by field."""
        extra = len(document) - self.width
        if not self.all_numbers or (
            extra and (extra != 1 or "return" not in document or self.return_is_feature)
        ):
            return None
        try:
            values = [document[name] for name in self.names]
        except KeyError:
            return None
        for value in values:
            if type(value) is not float and type(value) is not int:
                return None
        return values

    def convert(self, value, column: int) -> tuple[object, str | None]:
        """One value of the feature in `column`, as the model takes it, or what is wrong with it."""
        if self.plain:
            return to_number(value, self.kinds[column])
        return to_value(value, self.features[column], self.known[column])

    def empty(self, rows: int) -> np.ndarray:
        """Rows to fill: float64 for plain numbers, objects otherwise."""
        return np.zeros((rows, self.width), dtype=np.float64 if self.plain else object)

    def _absent(self, column: int) -> tuple[object, str | None]:
        """A feature left out of a named row: missing, where it may be."""
        return (MISSING_VALUE, None) if self.features[column].nullable else (0.0, "missing")

    def _named(self, document: dict, fields: dict[str, str]) -> list:
        values: list = [0.0] * self.width
        for index, name in enumerate(self.names):
            value = document.get(name, _MISSING)
            values[index], problem = self._absent(index) if value is _MISSING else self.convert(value, index)
            if problem:
                fields[name] = problem
        if fields or len(document) != self.width:
            for key in document:
                if key not in self.name_set and not (key == "return" and not self.return_is_feature):
                    fields[key] = "unexpected field"
        return values

    def _batch(self, body: bytes, document: dict, key: str, fields: dict[str, str]) -> np.ndarray:
        for other in document:
            if other != key and other != "return":
                fields[other] = "unexpected field"
        rows = document[key]
        if type(rows) is not list:
            fields[key] = "expected a list of rows"
            return _EMPTY
        if not rows:
            fields[key] = "expected at least one row"
            return _EMPTY
        if len(rows) > self.max_rows:
            raise RequestError(
                413, f"Too many rows: {len(rows)}; this endpoint takes at most {self.max_rows}."
            )
        if not fields:
            fast = self._fast_rows(body, rows, 6 if "return" in document else 2) if self.plain else None
            if fast is None and not self.plain:
                fast = self._fast_table(rows)
            if fast is not None:
                return fast
        return self._checked_rows(rows, key, fields)

    def _fast_rows(self, body: bytes, rows: list, quotes: int) -> np.ndarray | None:
        """Convert well-formed rows in one NumPy call; None sends the body to the detailed check.

        NumPy reads booleans as 0/1, so any `true`/`false` in the body (even inside a key) takes
        the detailed path; strings and nulls make NumPy pick a non-numeric dtype and fail below.
        `quotes` is how many `"` the body holds when no row contains a string (the batch key and
        `"return": "<mode>"`): then list rows are read straight into float64, which is faster.
        """
        if b"true" in body or b"false" in body:
            return None
        width = self.width
        if type(rows[0]) is list and body.count(b'"') == quotes:
            if not all(type(row) is list and len(row) == width for row in rows):
                return None
            try:
                array = np.fromiter(chain.from_iterable(rows), np.float64, len(rows) * width)
            except (TypeError, ValueError, OverflowError):  # a nested list, an object, a huge integer
                return None
            return self._checked_numbers(array.reshape(len(rows), width))
        if type(rows[0]) is dict:
            names, width = self.names, self.width
            try:
                if any(len(row) != width for row in rows):
                    return None
                rows = [[row[name] for name in names] for row in rows]
            except (KeyError, TypeError):
                return None
        try:
            array = np.array(rows)
        except (ValueError, TypeError):
            return None
        if array.dtype.kind not in "fi" or array.ndim != 2 or array.shape[1] != self.width:
            return None
        return self._checked_numbers(array.astype(np.float64, copy=False))

    def _fast_table(self, rows: list) -> np.ndarray | None:
        """A table's well-formed rows, checked a column at a time; None sends them to the
        detailed check (which names every value that is wrong)."""
        width = self.width
        kinds = set(map(type, rows))
        if kinds == {list}:
            if set(map(len, rows)) != {width}:
                return None
        elif kinds == {dict}:
            if set(map(len, rows)) != {width}:
                return None
            names = self.names
            try:
                rows = [[row[name] for name in names] for row in rows]
            except KeyError:  # a feature left out
                return None
        else:
            return None
        array = self.empty(len(rows))
        for column, values in enumerate(zip(*rows, strict=True)):
            checked = self._fast_column(values, column)
            if checked is None:
                return None
            array[:, column] = checked
        return array

    def _fast_column(self, values: tuple, column: int) -> list | np.ndarray | None:
        """One column's values as the model takes them, if every one is right for its feature."""
        feature, known = self.features[column], self.known[column]
        types = set(map(type, values))
        missing = type(None) in types
        if missing:
            if not feature.nullable:
                return None
            types.discard(type(None))
        if feature.type == "string":
            if not types <= {str}:
                return None
            given = [value for value in values if value is not None] if missing else values
            if known is not None and not known.issuperset(given):
                return None
            return [MISSING_VALUE if value is None else value for value in values] if missing else values
        if not types <= ({bool, int, float} if feature.type == "boolean" else {int, float}):
            return None
        try:
            numbers = np.array(values, dtype=np.float64)  # None reads as NaN
        except OverflowError:
            return None
        present = numbers[~np.isnan(numbers)] if missing else numbers
        given = len(values) - values.count(None) if missing else len(values)
        if len(present) != given or not np.isfinite(present).all():  # NaN or infinity given
            return None
        if feature.type == "integer" and not np.array_equal(present, np.floor(present)):
            return None
        if feature.type == "boolean" and not np.isin(present, (0.0, 1.0)).all():
            return None
        if known is not None and not known.issuperset(present.tolist()):
            return None
        return numbers

    def _checked_numbers(self, array: np.ndarray) -> np.ndarray | None:
        """The array if every value is finite and fits its column's type (nulls read as NaN)."""
        return array if np.isfinite(array).all() and self._fits_types(array) else None

    def _fits_types(self, array: np.ndarray) -> bool:
        """Whether the integer columns hold whole numbers and the boolean columns 0 and 1 only."""
        if self.all_numbers:
            return True
        if self.integer_columns:
            whole = array[:, self.integer_columns]
            if not np.array_equal(whole, np.floor(whole)):
                return False
        return not self.boolean_columns or bool(np.isin(array[:, self.boolean_columns], (0.0, 1.0)).all())

    def _checked_rows(self, rows: list, key: str, fields: dict[str, str]) -> np.ndarray:
        array = self.empty(len(rows))
        width, names, convert = self.width, self.names, self.convert
        for row_index, row in enumerate(rows):
            if len(fields) >= MAX_REPORTED_FIELDS:
                break
            path = f"{key}/{row_index}"
            if type(row) is list:
                if len(row) != width:
                    fields[path] = f"expected {width} values, got {len(row)}"
                    continue
                for column, value in enumerate(row):
                    array[row_index, column], problem = convert(value, column)
                    if problem:
                        fields[f"{path}/{column}"] = problem
            elif type(row) is dict:
                for column, name in enumerate(names):
                    value = row.get(name, _MISSING)
                    array[row_index, column], problem = (
                        self._absent(column) if value is _MISSING else convert(value, column)
                    )
                    if problem:
                        fields[f"{path}/{name}"] = problem
                for name in row:
                    if name not in self.name_set:
                        fields[f"{path}/{name}"] = "unexpected field"
            else:
                fields[path] = f"expected a list of {width} values or an object of named features"
        return array


def invalid(fields: dict[str, str]) -> RequestError:
    count = len(fields)
    shown = "" if count < MAX_REPORTED_FIELDS else f" (only the first {MAX_REPORTED_FIELDS} are listed)"
    noun = "field is" if count == 1 else "fields are"
    return RequestError(422, f"{count} {noun} invalid{shown}.", fields)


_MISSING = object()
_EMPTY = np.zeros((0, 0))
