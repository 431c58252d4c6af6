"""The Open Inference Protocol (KServe v2) part of the OpenAPI document: its paths and schemas."""

from __future__ import annotations

from collections.abc import Callable

from serving.binary_tensors import DATATYPES
from serving.open_inference import NUMERIC_TYPES

BINARY = (
    "Tensors may also travel in the binary tensor data extension (KServe, Triton): with an "
    "`Inference-Header-Content-Length` header giving the length of the JSON part, the body "
    "(`application/octet-stream`) is the JSON request, then the bytes of every input that has "
    "`parameters.binary_data_size` instead of `data`, in input order: little-endian, row-major, "
    "BOOL one byte (0 or 1), BYTES a 4-byte length before each element. Outputs with "
    '`"parameters": {"binary_data": true}`, or all outputs when the request has '
    '`"parameters": {"binary_data_output": true}`, come back the same way: the answer is '
    "`application/octet-stream` with the same header, its JSON part gives each such output's "
    "`parameters.binary_data_size` instead of `data`, and their bytes follow in output order. "
    "A body whose binary framing does not add up is a 400 that names the input."
)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def outputs_of(model) -> list[str]:
    if model.has_proba:
        return ["label", "probabilities"]
    return ["label" if model.is_classifier else "predict"]


def schemas(model, max_rows: int) -> dict:
    """InferenceRequest, InferenceResponse and ModelMetadata."""
    width = len(model.features)
    outputs = outputs_of(model)
    shape = {"type": "array", "items": {"type": "integer", "minimum": 0}}
    tensor_shape = {
        **shape,
        "minItems": 1,
        "maxItems": 2,
        "description": f"[rows, {width}] for one tensor of every feature; [rows] or [rows, 1] for a "
        f"tensor of one feature. rows is 1 to {max_rows}.",
    }
    value = {"anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "array", "items": {}}]}
    return {
        "InferenceRequest": {
            "type": "object",
            "description": f"One tensor of shape [rows, {width}] (any name), or one tensor per feature "
            "named after it, of shape [rows] or [rows, 1]. `data` holds as many values as the shape "
            "says, flat (row-major) or nested.",
            "properties": {
                "id": {"type": "string"},
                "inputs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": width,
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "shape": tensor_shape,
                            "datatype": {"type": "string", "enum": sorted(NUMERIC_TYPES)},
                            "data": {"type": "array", "items": value},
                            "parameters": {"type": "object"},
                        },
                        "required": ["name", "shape", "datatype", "data"],
                    },
                },
                "outputs": {
                    "type": "array",
                    "description": "The outputs to answer with, in this order; all of them when absent.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "enum": outputs},
                            "parameters": {
                                "type": "object",
                                "properties": {"binary_data": {"type": "boolean"}},
                            },
                        },
                        "required": ["name"],
                    },
                },
                "parameters": {
                    "type": "object",
                    "properties": {"binary_data_output": {"type": "boolean"}},
                },
            },
            "required": ["inputs"],
        },
        "InferenceResponse": {
            "type": "object",
            "properties": {
                "model_name": {"type": "string", "enum": [model.name]},
                "model_version": {"type": "string", "enum": [str(model.version)]},
                "id": {"type": "string"},
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "enum": outputs},
                            "datatype": {"type": "string", "enum": list(DATATYPES)},
                            "shape": shape,
                            "data": {"type": "array", "items": {}},
                            "parameters": {
                                "type": "object",
                                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
                            },
                        },
                        "required": ["name", "datatype", "shape"],
                    },
                },
            },
            "required": ["model_name", "model_version", "outputs"],
        },
        "ModelMetadata": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": _ref("TensorMetadata")},
                "outputs": {"type": "array", "items": _ref("TensorMetadata")},
                "parameters": {"type": "object"},
            },
            "required": ["name", "platform", "inputs", "outputs"],
        },
        "TensorMetadata": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "datatype": {"type": "string", "enum": list(DATATYPES)},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": -1}},
            },
            "required": ["name", "datatype", "shape"],
        },
    }


def paths(model, checked: dict, checked_errors: tuple, errors: Callable[..., dict]) -> dict:
    """Inference and metadata, also under /versions/<this version>.

    `checked` holds the key check's security requirement (empty without one), `checked_errors` its
    statuses, and `errors(*statuses)` describes error answers.
    """
    document = {}
    answer = {
        "description": "Output tensors: label (or predict) and probabilities. With outputs asked for in "
        "binary: the JSON part, then their bytes (application/octet-stream).",
        "headers": {
            "Inference-Header-Content-Length": {
                "description": "The length of the JSON part, when binary outputs follow it.",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
        "content": {
            "application/json": {"schema": _ref("InferenceResponse")},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    refused = errors(400)["400"]
    refused["description"] = (
        "The body is not valid JSON, the request is not valid HTTP, or the binary data of an input "
        "does not match its parameters, shape and datatype (the message names it)."
    )
    for base, which in (
        (f"/v2/models/{model.name}", ""),
        (f"/v2/models/{model.name}/versions/{model.version}", f" (version {model.version})"),
    ):
        document[f"{base}/infer"] = {
            "post": {
                "summary": f"Open Inference Protocol (KServe v2) inference{which}",
                "description": BINARY,
                **checked,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("InferenceRequest")}},
                },
                "responses": {"200": answer, "400": refused, **errors(*checked_errors, 404, 413, 415, 422)},
            }
        }
        document[base] = {
            "get": {
                "summary": f"Open Inference Protocol model metadata{which}",
                **checked,
                "responses": {
                    "200": {
                        "description": "Inputs and outputs.",
                        "content": {"application/json": {"schema": _ref("ModelMetadata")}},
                    },
                    **errors(*checked_errors),
                },
            }
        }
    return document
