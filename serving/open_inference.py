"""The Open Inference Protocol (KServe v2) routes, over the same validation and model as /predict.

An infer request carries either one tensor of shape [rows, features] (any name) or one tensor
per feature, named after the features, each of shape [rows] or [rows, 1]. `data` may be flat
(row-major) or nested. The answer has a `label` tensor (or `predict` for regressors) and, for
classifiers that give them, `probabilities` of shape [rows, classes] in the model's class order;
`outputs` in the request may ask for a subset.
"""

from __future__ import annotations

import numpy as np

from serving.validation import MAX_REPORTED_FIELDS, RequestError, Validator, invalid, load_json

NUMERIC_TYPES = {
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
}
TABLE_TYPES = NUMERIC_TYPES | {"BYTES"}  # text features come as BYTES tensors (JSON strings)
#: The tensor type each feature type is described with.
INPUT_TYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL", "string": "BYTES"}


def _flatten(data) -> list:
    """The values of nested lists in row-major order (iterative: JSON may nest 1,000 deep)."""
    if type(data) is not list or not data or type(data[0]) is not list:
        return data if type(data) is list else [data]
    flat = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if type(item) is list:
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _tensor_name(tensor) -> str | None:
    name = tensor.get("name") if type(tensor) is dict else None
    return name if type(name) is str else None


def _shape_rows(shape, width: int | None) -> int | None:
    """Rows described by a tensor shape: [rows, width] (width given) or [rows] / [rows, 1]."""
    if type(shape) is not list or not all(type(size) is int and size >= 0 for size in shape):
        return None
    if width is not None:
        return shape[0] if len(shape) == 2 and shape[1] == width else None
    return shape[0] if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1) else None


class InferenceRequest:
    """Parse an infer body into validated rows; errors name fields by path like inputs/0/data/5."""

    def __init__(self, validator: Validator):
        self.validator = validator

    def parse(self, body: bytes) -> tuple[np.ndarray, str | None, list[str] | None]:
        """(rows, request id, requested output names or None)."""
        document, _ = load_json(body)
        if type(document) is not dict:
            raise RequestError(422, "The body must be a JSON object with an `inputs` list.", {})
        fields: dict[str, str] = {}
        inputs = document.get("inputs")
        if type(inputs) is not list or not inputs:
            fields["inputs"] = "expected a non-empty list of tensors"
            raise invalid(fields)
        request_id = document.get("id")
        if request_id is not None and type(request_id) is not str:
            fields["id"] = "expected a string"
        outputs = self._outputs(document.get("outputs"), fields)
        validator = self.validator
        names = [_tensor_name(tensor) for tensor in inputs]
        if len(inputs) == validator.width and set(names) == validator.name_set and validator.width > 1:
            rows = self._columns(inputs, names, fields)
        elif len(inputs) == 1:
            rows = self._matrix(inputs[0], fields)
        else:
            fields["inputs"] = (
                f"expected one tensor of shape [rows, {validator.width}], "
                f"or one tensor per feature named {', '.join(validator.names)}"
            )
            rows = None
        if fields:
            raise invalid(fields)
        return rows, request_id, outputs

    def _outputs(self, requested, fields: dict[str, str]) -> list[str] | None:
        if requested is None:
            return None
        if type(requested) is not list or not all(
            type(item) is dict and "name" in item for item in requested
        ):
            fields["outputs"] = 'expected a list of {"name": ...} objects'
            return None
        return [str(item["name"]) for item in requested]

    def _tensor_values(self, tensor, path: str, fields: dict[str, str], width: int | None):
        if type(tensor) is not dict:
            fields[path] = "expected a tensor object with name, shape, datatype and data"
            return None, None
        rows = _shape_rows(tensor.get("shape"), width)
        if not rows:
            expected = f"[rows, {width}]" if width is not None else "[rows] or [rows, 1]"
            fields[f"{path}/shape"] = f"expected {expected}, at least one row"
        datatype = tensor.get("datatype")
        accepted = NUMERIC_TYPES if self.validator.plain else TABLE_TYPES
        if type(datatype) is not str or datatype not in accepted:
            fields[f"{path}/datatype"] = f"expected one of {', '.join(sorted(accepted))}"
        data = tensor.get("data")
        if type(data) is not list:
            fields[f"{path}/data"] = "expected a list of values"
            return None, None
        flat = _flatten(data)
        if rows and len(flat) != rows * (width or 1):
            fields[f"{path}/data"] = (
                f"expected {rows * (width or 1)} values for shape {tensor['shape']}, got {len(flat)}"
            )
            return None, None
        if rows and rows > self.validator.max_rows:
            raise RequestError(
                413, f"Too many rows: {rows}; this endpoint takes at most {self.validator.max_rows}."
            )
        return rows, flat

    def _matrix(self, tensor, fields: dict[str, str]) -> np.ndarray | None:
        validator = self.validator
        rows, flat = self._tensor_values(tensor, "inputs/0", fields, validator.width)
        if flat is None or fields:
            return None
        values = validator.empty(rows).ravel()
        for index, value in enumerate(flat):
            values[index], problem = validator.convert(value, index % validator.width)
            if problem:
                fields[f"inputs/0/data/{index}"] = problem
                if len(fields) >= MAX_REPORTED_FIELDS:
                    break
        return values.reshape(rows, validator.width)

    def _columns(self, inputs: list, names: list, fields: dict[str, str]) -> np.ndarray | None:
        validator = self.validator
        columns: dict[str, list] = {}
        counts = set()
        for index, (tensor, name) in enumerate(zip(inputs, names, strict=True)):
            rows, flat = self._tensor_values(tensor, f"inputs/{index}", fields, None)
            if flat is not None:
                columns[name] = (index, flat)
                counts.add(len(flat))
        if fields:
            return None
        if len(counts) != 1:
            fields["inputs"] = "every feature tensor must have the same number of rows"
            return None
        array = validator.empty(counts.pop())
        for column, name in enumerate(validator.names):
            index, flat = columns[name]
            for row, value in enumerate(flat):
                array[row, column], problem = validator.convert(value, column)
                if problem:
                    fields[f"inputs/{index}/data/{row}"] = problem
        return array


def _datatype(values: list) -> str:
    if all(type(value) is str for value in values):
        return "BYTES"
    if all(type(value) is int for value in values):
        return "INT64"
    return "FP64"


def infer_response(model, rows: np.ndarray, request_id: str | None, wanted: list[str] | None) -> dict:
    """The infer response document for validated rows."""
    available = (
        ["label", "probabilities"] if model.has_proba else ["label" if model.is_classifier else "predict"]
    )
    wanted = wanted or available
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise RequestError(
            422,
            f"This model has no output {unknown[0]!r}.",
            {"outputs": f"expected some of {', '.join(available)}"},
        )
    count = len(rows)
    if "probabilities" in wanted:
        labels, probabilities = model.both_for(rows)
    else:
        labels, probabilities = model.labels_for(rows), None
    outputs = []
    for name in wanted:
        if name == "probabilities":
            flat = [value for row in probabilities for value in row]
            outputs.append(
                {"name": name, "datatype": "FP64", "shape": [count, len(model.classes)], "data": flat}
            )
        else:
            outputs.append({"name": name, "datatype": _datatype(labels), "shape": [count], "data": labels})
    document = {"model_name": model.name, "model_version": str(model.version), "outputs": outputs}
    if request_id is not None:
        document["id"] = request_id
    return document


def model_metadata(model) -> dict:
    """GET /v2/models/{name}."""
    outputs = (
        [{"name": "label", "datatype": "BYTES", "shape": [-1]}]
        if model.is_classifier
        else [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    )
    if model.has_proba:
        outputs.append({"name": "probabilities", "datatype": "FP64", "shape": [-1, len(model.classes)]})
    return {
        "name": model.name,
        "versions": [str(model.version)],
        "platform": "scikit-learn",
        "inputs": (
            [{"name": "input-0", "datatype": "FP64", "shape": [-1, model.n_features]}] if model.plain else []
        )
        + [
            {"name": feature.name, "datatype": INPUT_TYPES[feature.type], "shape": [-1]}
            for feature in model.features
        ],
        "outputs": outputs,
        "parameters": {"features": model.names, "classes": model.classes, "labels": model.labels},
    }
