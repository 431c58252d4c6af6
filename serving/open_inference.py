"""The Open Inference Protocol (KServe v2) routes, over the same validation and model as /predict.

An infer request carries either one tensor of shape [rows, features] (any name) or one tensor
per feature, named after the features, each of shape [rows] or [rows, 1]. `data` may be flat
(row-major) or nested. The answer has a `label` tensor (or `predict` for regressors) and, for
classifiers that give them, `probabilities` of shape [rows, classes] in the model's class order;
`outputs` in the request may ask for a subset.

Tensors may also travel as binary data, inputs and outputs alike (see binary_tensors.py).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import orjson

from serving import binary_tensors
from serving.protocol import Response, json_response
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


def _fits(matrix: np.ndarray, kinds: list[str]) -> bool:
    """Whether every value of a numeric matrix is one its column's feature takes."""
    if matrix.dtype.kind == "b":
        return all(kind == "boolean" for kind in kinds)
    if matrix.dtype.kind in "iu" and "boolean" not in kinds:
        return True  # whole numbers, all finite
    values = matrix.astype(np.float64, copy=False)
    # NaN or infinity (or a sum too large: then checked one by one)
    if not math.isfinite(np.add.reduce(values, axis=None)):
        return False
    for column, kind in enumerate(kinds):
        if kind == "integer" and not np.array_equal(values[:, column], np.floor(values[:, column])):
            return False
        if kind == "boolean" and not np.isin(values[:, column], (0.0, 1.0)).all():
            return False
    return True


def _invalid(fields: dict[str, str]) -> RequestError:
    """The 422 for `fields`, its message naming the first: clients such as tritonclient show only that."""
    refusal = invalid(fields)
    path, problem = next(iter(fields.items()))
    more = f" (and {len(fields) - 1} more)" if len(fields) > 1 else ""
    return RequestError(422, f"{refusal.message[:-1]}: {path}: {problem}{more}.", refusal.fields)


class Inference(NamedTuple):
    """A validated infer request."""

    rows: np.ndarray
    request_id: str | None
    outputs: list[tuple[str, bool | None]] | None  # (name, binary_data) asked for; None: all
    binary_output: bool  # the request's binary_data_output: outputs in binary unless they say


#: The binary float tensors the shortcut reads straight into rows.
FLOAT_DTYPES = {"FP64": np.dtype("<f8"), "FP32": np.dtype("<f4")}
#: JSON parts the shortcut keeps, read: how many, and up to what length.
KNOWN_HEADERS, KNOWN_HEADER_BYTES = 64, 1024


class FloatHeader(NamedTuple):
    """What the shortcut reads from a JSON part: the tensor's rows and datatype, and the request's."""

    rows: int
    dtype: np.dtype
    request_id: str | None
    binary_output: bool


class InferenceRequest:
    """Parse an infer body into validated rows; errors name fields by path like inputs/0/data/5."""

    def __init__(self, validator: Validator, *, shortcut: bool = True):
        self.validator = validator
        # Every feature a number: a float tensor of finite values is valid as it is.
        self.shortcut = shortcut and validator.plain and all(kind == "number" for kind in validator.kinds)
        # A client sends the same JSON part with every batch of a size (tritonclient does): it is
        # read once. Emptied when full, so headers that never repeat (a request id each) cost little.
        self.known_headers: dict[bytes, FloatHeader] = {}

    def parse(self, body: bytes, header_length: int | None = None) -> Inference:
        """The request; `header_length` (Inference-Header-Content-Length) says binary data follows."""
        tail = None
        if header_length is not None:
            found = self._one_float_tensor(body, header_length)
            if found is not None:
                return found
            body, tail = binary_tensors.split(body, header_length)
        document, _ = load_json(body)
        if type(document) is not dict:
            raise RequestError(422, "The body must be a JSON object with an `inputs` list.", {})
        fields: dict[str, str] = {}
        inputs = document.get("inputs")
        if type(inputs) is not list or not inputs:
            fields["inputs"] = "expected a non-empty list of tensors"
            raise _invalid(fields)
        binary = binary_tensors.read_inputs(inputs, tail)
        request_id = document.get("id")
        if request_id is not None and type(request_id) is not str:
            fields["id"] = "expected a string"
        outputs = self._outputs(document.get("outputs"), fields)
        binary_output = self._binary_output(document.get("parameters"), fields)
        validator = self.validator
        names = [_tensor_name(tensor) for tensor in inputs]
        if len(inputs) == validator.width and set(names) == validator.name_set and validator.width > 1:
            rows = self._columns(inputs, names, binary, fields)
        elif len(inputs) == 1:
            rows = self._matrix(inputs[0], binary.get(0), fields)
        else:
            fields["inputs"] = (
                f"expected one tensor of shape [rows, {validator.width}], "
                f"or one tensor per feature named {', '.join(validator.names)}"
            )
            rows = None
        if fields:
            raise _invalid(fields)
        return Inference(rows, request_id, outputs, binary_output)

    def _one_float_tensor(self, body: bytes, header_length: int) -> Inference | None:
        """The request as tritonclient sends it by default, read in one go: one FP64 or FP32
        tensor [rows, features] in binary, all outputs asked for, every feature a number and every
        value finite. None for anything else (the full parse then names what is wrong)."""
        if not self.shortcut or not 0 < header_length < len(body):
            return None
        header = body[:header_length]
        known = self.known_headers.get(header)
        if known is None:
            known = self._float_header(header)
            if known is None:
                return None
            if header_length <= KNOWN_HEADER_BYTES:
                if len(self.known_headers) >= KNOWN_HEADERS:
                    self.known_headers.clear()
                self.known_headers[header] = known
        rows, dtype, request_id, binary_output = known
        width = self.validator.width
        if len(body) - header_length != rows * width * dtype.itemsize:
            return None
        matrix = np.ndarray((rows, width), dtype, body, header_length)  # frombuffer + reshape, cheaper
        if not math.isfinite(np.add.reduce(matrix, axis=None)):
            return None
        return Inference(matrix.astype(np.float64), request_id, None, binary_output)

    def _float_header(self, header: bytes) -> FloatHeader | None:
        """The JSON part of a request the shortcut takes, read; None for any other."""
        try:
            document = orjson.loads(header)
        except orjson.JSONDecodeError:
            return None
        if type(document) is not dict or not document.keys() <= {"inputs", "parameters", "id"}:
            return None
        inputs = document.get("inputs")
        if type(inputs) is not list or len(inputs) != 1 or type(tensor := inputs[0]) is not dict:
            return None
        dtype = FLOAT_DTYPES.get(tensor.get("datatype"))
        shape, parameters = tensor.get("shape"), tensor.get("parameters")
        width, validator = self.validator.width, self.validator
        if dtype is None or "data" in tensor or type(shape) is not list or len(shape) != 2:
            return None
        rows = shape[0]
        if type(rows) is not int or not 0 < rows <= validator.max_rows or shape[1] != width:
            return None
        if parameters != {"binary_data_size": rows * width * dtype.itemsize}:
            return None
        request_id = document.get("id")
        binary_output = self._binary_output(document.get("parameters"), fields := {})
        if fields or (request_id is not None and type(request_id) is not str):
            return None
        return FloatHeader(rows, dtype, request_id, binary_output)

    def _outputs(self, requested, fields: dict[str, str]) -> list[tuple[str, bool | None]] | None:
        if requested is None:
            return None
        if type(requested) is not list or not all(
            type(item) is dict and "name" in item for item in requested
        ):
            fields["outputs"] = 'expected a list of {"name": ...} objects'
            return None
        outputs = []
        for index, item in enumerate(requested):
            binary = None
            parameters = item.get("parameters")
            if parameters is not None and type(parameters) is not dict:
                fields[f"outputs/{index}/parameters"] = "expected an object"
            elif parameters is not None:
                binary = parameters.get("binary_data")
                if binary is not None and type(binary) is not bool:
                    fields[f"outputs/{index}/parameters/binary_data"] = "expected true or false"
            outputs.append((str(item["name"]), binary))
        return outputs

    def _binary_output(self, parameters, fields: dict[str, str]) -> bool:
        if parameters is None:
            return False
        if type(parameters) is not dict:
            fields["parameters"] = "expected an object"
            return False
        binary = parameters.get("binary_data_output", False)
        if type(binary) is not bool:
            fields["parameters/binary_data_output"] = "expected true or false"
            return False
        return binary

    def _tensor_values(self, tensor, path: str, fields: dict[str, str], width: int | None, binary):
        if type(tensor) is not dict:
            fields[path] = "expected a tensor object with name, shape, datatype and data"
            return None, None
        rows = _shape_rows(tensor.get("shape"), width)
        if not rows:
            expected = f"[rows, {width}]" if width is not None else "[rows] or [rows, 1]"
            fields[f"{path}/shape"] = f"expected {expected}, at least one row"
        datatype = tensor.get("datatype")
        accepted = NUMERIC_TYPES if self.validator.plain else TABLE_TYPES
        if type(binary) is list:  # BYTES, for string features
            names, kinds = self.validator.names, self.validator.kinds
            fed = names if width is not None else [tensor["name"]]
            others = [
                name for name, kind in zip(names, kinds, strict=True) if name in fed and kind != "string"
            ]
            if others:
                fields[f"{path}/datatype"] = (
                    f"BYTES is for string features; {', '.join(others)} take numbers or booleans"
                )
                return None, None
        elif type(datatype) is not str or datatype not in accepted:
            fields[f"{path}/datatype"] = f"expected one of {', '.join(sorted(accepted))}"
        if type(binary) is list:
            try:
                flat = [element.decode() for element in binary]  # text for string features
            except UnicodeDecodeError:
                fields[f"{path}/data"] = "BYTES elements must be UTF-8 text"
                return None, None
        elif binary is not None:
            flat = binary
        elif type(data := tensor.get("data")) is list:
            flat = _flatten(data)
        else:
            fields[f"{path}/data"] = "expected a list of values"
            return None, None
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

    def _matrix(self, tensor, binary, fields: dict[str, str]) -> np.ndarray | None:
        validator = self.validator
        rows, flat = self._tensor_values(tensor, "inputs/0", fields, validator.width, binary)
        if flat is None or fields:
            return None
        if type(flat) is np.ndarray:
            matrix = flat.reshape(rows, validator.width)
            if validator.plain and _fits(matrix, validator.kinds):
                return matrix.astype(np.float64)
            flat = flat.tolist()  # checked value by value, to name each one that does not fit
        values = validator.empty(rows).ravel()
        for index, value in enumerate(flat):
            values[index], problem = validator.convert(value, index % validator.width)
            if problem:
                fields[f"inputs/0/data/{index}"] = problem
                if len(fields) >= MAX_REPORTED_FIELDS:
                    break
        return values.reshape(rows, validator.width)

    def _columns(self, inputs: list, names: list, binary: dict, fields: dict[str, str]) -> np.ndarray | None:
        validator = self.validator
        columns: dict[str, tuple] = {}
        counts = set()
        for index, (tensor, name) in enumerate(zip(inputs, names, strict=True)):
            rows, flat = self._tensor_values(tensor, f"inputs/{index}", fields, None, binary.get(index))
            if flat is not None:
                columns[name] = (index, flat)
                counts.add(len(flat))
        if fields:
            return None
        if len(counts) != 1:
            fields["inputs"] = "every feature tensor must have the same number of rows"
            return None
        ordered = [columns[name][1] for name in validator.names]
        if validator.plain and all(
            type(flat) is np.ndarray and _fits(flat.reshape(-1, 1), [kind])
            for flat, kind in zip(ordered, validator.kinds, strict=True)
        ):
            return np.column_stack(ordered).astype(np.float64)
        array = validator.empty(counts.pop())
        for column, name in enumerate(validator.names):
            index, flat = columns[name]
            if type(flat) is np.ndarray:
                flat = flat.tolist()
            for row, value in enumerate(flat):
                array[row, column], problem = validator.convert(value, column)
                if problem:
                    fields[f"inputs/{index}/data/{row}"] = problem
        return array


def _datatype(values: list) -> str:
    """The tensor datatype of a model's labels: numbers when all are, else text (BYTES)."""
    types = set(map(type, values))
    if types <= {int}:
        return "INT64"
    if types <= {int, float}:
        return "FP64"
    return "BYTES"


#: Class values up to this one index a table of labels (see _by_class_value).
MAX_TABLE_CLASS = 4096


def _by_class_value(encoded: dict | None) -> np.ndarray | None:
    """The encoded labels in an array indexed by class value, when the classes are small
    non-negative integers (scikit-learn's encoded targets, 0 to k - 1, usually are): a batch's
    labels are then one take, not a lookup per row."""
    if not encoded or not all(type(value) is int and 0 <= value <= MAX_TABLE_CLASS for value in encoded):
        return None
    table = np.empty(max(encoded) + 1, dtype=object)
    for value, label in encoded.items():
        table[value] = label
    return table


class InferenceAnswers:
    """Infer responses for one model, with what every response shares worked out once: the
    outputs it has, its labels' datatype, and each class's label as binary BYTES."""

    def __init__(self, model):
        self.model = model
        self.available = (
            ["label", "probabilities"] if model.has_proba else ["label" if model.is_classifier else "predict"]
        )
        self.label_datatype = _datatype(model.labels) if model.is_classifier else "FP64"
        self.label_bytes = (
            {value: binary_tensors.encode_bytes([str(label)]) for value, label in model.label_of.items()}
            if self.label_datatype == "BYTES"
            else None
        )
        self.label_table = _by_class_value(self.label_bytes)
        self.all_binary = self._all_binary_header()

    def _all_binary_header(self) -> bytes:
        """The JSON part of an answer with every output in binary, as a %-template of each output's
        row count and size (what tritonclient asks for by default)."""
        sentinels = iter(range(9_000_000_001, 9_000_000_009))
        outputs = []
        for name in self.available:
            columns = [len(self.model.classes)] if name == "probabilities" else []
            datatype = "FP64" if name in ("probabilities", "predict") else self.label_datatype
            outputs.append(
                {
                    "name": name,
                    "datatype": datatype,
                    "shape": [next(sentinels), *columns],
                    "parameters": {"binary_data_size": next(sentinels)},
                }
            )
        document = {
            "model_name": self.model.name,
            "model_version": str(self.model.version),
            "outputs": outputs,
        }
        template = orjson.dumps(document).replace(b"%", b"%%")
        for sentinel in range(9_000_000_001, 9_000_000_001 + 2 * len(outputs)):
            template = template.replace(b"%d" % sentinel, b"%d")
        return template

    def response(self, inference: Inference) -> Response:
        """The infer response for a validated request: JSON, or JSON then binary outputs."""
        if inference.binary_output and inference.outputs is None and inference.request_id is None:
            return self._all_in_binary(inference.rows)
        model, default = self.model, inference.binary_output
        asked = inference.outputs or [(name, None) for name in self.available]
        wanted = [name for name, _ in asked]
        binary = {name for name, choice in asked if (default if choice is None else choice)}
        unknown = [name for name in wanted if name not in self.available]
        if unknown:
            raise RequestError(
                422,
                f"This model has no output {unknown[0]!r}.",
                {"outputs": f"expected some of {', '.join(self.available)}"},
            )
        raw, probabilities = model.answers(inference.rows, "probabilities" in wanted)
        count = len(raw)
        outputs, tensors = [], []
        for name in wanted:
            if name == "probabilities":
                output = {"name": name, "datatype": "FP64", "shape": [count, len(model.classes)]}
                if name in binary:
                    tensors.append(probabilities.astype("<f8", copy=False).tobytes())
                else:
                    output["data"] = probabilities.ravel().tolist()
            else:
                output = {"name": name, "datatype": self.label_datatype, "shape": [count]}
                if name in binary:
                    tensors.append(self._label_tensor(raw))
                else:
                    output["data"] = model.labels_of(raw)
            if name in binary:
                output["parameters"] = {"binary_data_size": len(tensors[-1])}
            outputs.append(output)
        document = {"model_name": model.name, "model_version": str(model.version), "outputs": outputs}
        if inference.request_id is not None:
            document["id"] = inference.request_id
        if tensors:
            return binary_tensors.binary_response(orjson.dumps(document), tensors)
        return json_response(200, document)

    def _all_in_binary(self, rows: np.ndarray) -> Response:
        """Every output in binary: the same answer as `response` builds, from the header template."""
        raw, probabilities = self.model.answers(rows, self.model.has_proba)
        count = len(raw)
        tensors = [self._label_tensor(raw)]
        if probabilities is not None:
            tensors.append(probabilities.astype("<f8", copy=False).tobytes())
        sizes = [number for tensor in tensors for number in (count, len(tensor))]
        return binary_tensors.binary_response(self.all_binary % tuple(sizes), tensors)

    def _label_tensor(self, raw: np.ndarray) -> bytes:
        if self.label_table is not None and raw.dtype.kind in "iu":
            return b"".join(self.label_table[raw].tolist())
        if self.label_bytes is not None:
            return b"".join(map(self.label_bytes.__getitem__, raw.tolist()))
        if not self.model.is_classifier:
            return raw.astype("<f8").tobytes()
        dtype = "<i8" if self.label_datatype == "INT64" else "<f8"
        return np.array(self.model.labels_of(raw), dtype=dtype).tobytes()


def model_metadata(model) -> dict:
    """GET /v2/models/{name}."""
    outputs = (
        [{"name": "label", "datatype": _datatype(model.labels), "shape": [-1]}]
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
