"""The playground's form: inputs built from a version's input schema, read back into a request body.

One row is one input per feature (a number, an integer, true/false, or text, a list when the
model knows a closed set), named `feature-<column>`; an empty input is `null` where the feature
may be missing and left out otherwise (the serving process then says it is missing). A batch is a
JSON list of rows in a textarea, sent as {"inputs": [...]}. Values are sent as typed; what the
form cannot type (letters in a number) is sent as it was written, for the serving process to
name the field, as it would for any caller.

    form = PlaygroundForm(version.input_schema, data=request.POST)
    body = form.body()            # {"sepal_length": 5.1, ...} or {"inputs": [...]}
    form.attach(answer.fields)    # a 422's fields shown next to their inputs
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from serving.validation import RETURN_MODES

SHAPES = ("row", "batch")
MAX_BATCH_ROWS = 100
RETURN_CHOICES = [
    ("", "Default"),
    ("label", "label"),
    ("probabilities", "probabilities"),
    ("both", "both"),
]


@dataclass
class Input:
    """One feature's input, as the template draws it."""

    column: int
    name: str
    type: str
    nullable: bool
    categories: list
    closed: bool  # only the known values are taken
    value: str  # as the input shows it
    hint: str = ""  # where the example value came from
    errors: list[str] = field(default_factory=list)

    @property
    def input_name(self) -> str:
        return f"feature-{self.column}"

    @property
    def widget(self) -> str:
        if self.type == "boolean":
            return "boolean"
        if self.categories and self.closed:
            return "select"
        return "number" if self.type in ("number", "integer") else "text"

    @property
    def step(self) -> str:
        return "1" if self.type == "integer" else "any"

    @property
    def choices(self) -> list[tuple[str, str]]:
        """(value, label) of a select: the known values, true/false, and empty for missing."""
        if self.widget == "boolean":
            options = [("true", "true"), ("false", "false")]
        else:
            options = [(_shown(value), _shown(value)) for value in self.categories]
        return ([("", "(missing)")] if self.nullable else []) + options


def _shown(value) -> str:
    """A JSON value as an input shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return str(value)


def _typed(raw: str, kind: str):
    """What an input's text is sent as: the feature's type where it reads as one, else the text."""
    text = raw.strip()
    if kind == "string":
        return raw
    if kind == "boolean":
        return {"true": True, "false": False}.get(text.lower(), raw)
    try:
        number = float(text)
    except ValueError:
        return raw
    if kind == "integer" and number.is_integer():
        return int(number)
    return number


class PlaygroundForm:
    """The form for a schema (`input_schema`, as stored on a version), bound to `data` or to the
    version's examples."""

    def __init__(
        self, input_schema: list[dict], *, examples: dict | None = None, data=None, classifier: bool = True
    ):
        self.schema = input_schema
        self.classifier = classifier
        self.data = data
        examples = examples or {}
        rows = examples.get("rows") or [{}]
        self.examples_rows = rows
        hints = examples.get("by_feature") or {}
        self.errors: list[str] = []
        self.batch_errors: list[str] = []
        self.return_error = ""
        self.api_key_error = ""
        self.inputs = []
        for column, entry in enumerate(input_schema):
            name = entry["name"]
            value = data.get(f"feature-{column}", "") if data is not None else _shown(rows[0].get(name))
            self.inputs.append(
                Input(
                    column=column,
                    name=name,
                    type=entry.get("type", "number"),
                    nullable=bool(entry.get("nullable")),
                    categories=list(entry.get("categories") or []),
                    closed=not entry.get("other_values", True),
                    value=value,
                    hint=hints.get(name, ""),
                )
            )
        if data is not None:
            self.shape = data.get("shape") if data.get("shape") in SHAPES else "row"
            self.rows_text = data.get("rows", "")
            self.mode = data.get("return", "")
        else:
            self.shape = "row"
            self.rows_text = json.dumps(rows, indent=2, ensure_ascii=False)
            self.mode = ""

    @property
    def return_choices(self):
        """A regressor gives values only: its one choice is the label (the default)."""
        return RETURN_CHOICES if self.classifier else RETURN_CHOICES[:2]

    def row(self) -> dict:
        """The one row the inputs give, as named features."""
        row: dict = {}
        for each in self.inputs:
            if each.value.strip() == "":
                if each.nullable:
                    row[each.name] = None
                continue  # left out: the serving process says it is missing
            row[each.name] = _typed(each.value, each.type)
        return row

    def rows(self) -> list | None:
        """The batch's rows, or None (with `batch_errors` saying why) when the text is not a list."""
        try:
            rows = json.loads(self.rows_text)
        except ValueError as exc:
            self.batch_errors.append(f"This is not valid JSON: {exc}.")
            return None
        if not isinstance(rows, list) or not rows:
            self.batch_errors.append(
                "Give a JSON list of rows: objects of named features, or lists of values."
            )
            return None
        if len(rows) > MAX_BATCH_ROWS:
            self.batch_errors.append(f"The playground sends at most {MAX_BATCH_ROWS} rows.")
            return None
        return rows

    def body(self) -> dict | None:
        """The request body, or None when the form is wrong before anything is sent."""
        if self.mode not in ("", *RETURN_MODES):
            self.return_error = f"Choose one of {', '.join(RETURN_MODES)}."
            return None
        if self.shape == "batch":
            rows = self.rows()
            return None if rows is None else {"inputs": rows}
        return self.row()

    @property
    def return_mode(self) -> str | None:
        return self.mode or None

    def attach(self, fields: dict[str, str]) -> None:
        """Show a 422's fields: a feature's next to its input, a batch's under the rows, the rest
        above the form."""
        by_name = {each.name: each for each in self.inputs}
        for path, problem in fields.items():
            if path == "return":
                self.return_error = problem
            elif self.shape == "row" and path in by_name:
                by_name[path].errors.append(problem)
            elif self.shape == "batch" and path.startswith(("inputs/", "inputs")):
                self.batch_errors.append(f"{path}: {problem}")
            else:
                self.errors.append(f"{path}: {problem}")

    @property
    def has_errors(self) -> bool:
        return bool(
            self.errors
            or self.batch_errors
            or self.return_error
            or self.api_key_error
            or any(each.errors for each in self.inputs)
        )
