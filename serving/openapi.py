"""The OpenAPI 3 document for this model: every feature named and typed, every request form."""

from __future__ import annotations

from serving.validation import RETURN_MODES

FEATURE_SCHEMAS = {
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "boolean": {"oneOf": [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]}]},
}
ERROR = {"$ref": "#/components/schemas/Error"}
VALIDATION_ERROR = {"$ref": "#/components/schemas/ValidationError"}


def _response(description: str, schema: dict, example=None) -> dict:
    content = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"description": description, "content": {"application/json": content}}


def _errors(*statuses: int) -> dict:
    described = {
        400: "The body is not valid JSON, or the request is not valid HTTP.",
        401: "No API key, an unknown one, or a key sent in the query string.",
        403: "The key is revoked or expired, or the caller's address is not allowed.",
        404: "No such model here.",
        413: "The body or the number of rows is over the limit.",
        415: "The body is not sent as application/json.",
        422: "Fields are missing, extra or mistyped; `fields` names each by path.",
    }
    return {
        str(status): _response(described[status], VALIDATION_ERROR if status == 422 else ERROR)
        for status in statuses
    }


def build(model, *, max_rows: int, max_body_bytes: int, keys_checked: bool) -> dict:
    """The document; `keys_checked` adds the x-api-key security scheme to the checked routes."""
    features = {feature.name: FEATURE_SCHEMAS[feature.type] for feature in model.features}
    example_row = {feature.name: (1 if feature.type != "number" else 1.0) for feature in model.features}
    width = len(model.features)
    row_list = {
        "type": "array",
        "items": {"type": "number"},
        "minItems": width,
        "maxItems": width,
        "description": f"Values in this order: {', '.join(model.names)}.",
    }
    row_object = {"$ref": "#/components/schemas/NamedFeatures"}
    return_mode = {
        "type": "string",
        "enum": list(RETURN_MODES),
        "description": "What to return: the label, the class probabilities, or both. "
        "Default: both for a named-feature row, label for batches. Probabilities need a classifier "
        "with predict_proba.",
    }
    rows = {"type": "array", "minItems": 1, "maxItems": max_rows}
    labels = model.labels if model.is_classifier else None
    label_schema = {"enum": labels} if labels else {"type": "number"}
    probabilities = {
        "type": "object",
        "properties": {str(label): {"type": "number"} for label in model.labels},
        "description": "Class probabilities, keyed by label, in the model's class order.",
    }
    named_answer = {
        "type": "object",
        "properties": {
            **{f"{label}_probability": {"type": "number"} for label in model.labels},
            "target": label_schema,
        },
    }
    security = [{"ApiKey": []}] if keys_checked else []
    checked = {"security": security} if keys_checked else {}
    checked_errors = (401, 403) if keys_checked else ()
    description = (
        f"Predictions from {model.name} version {model.version} (sha256 {model.sha256}).\n\n"
        "Typing: `number` takes JSON integers and floats, never booleans; `integer` takes integers "
        "and whole floats such as 3.0; `boolean` takes true/false and 0/1. NaN and Infinity are refused. "
        f"Bodies are limited to {max_body_bytes} bytes and {max_rows} rows."
    )
    document = {
        "openapi": "3.0.3",
        "info": {
            "title": f"{model.name} model endpoint",
            "version": str(model.version),
            "description": description,
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Predict for one named-feature row or a batch of rows",
                    **checked,
                    "parameters": [
                        {"name": "return", "in": "query", "required": False, "schema": return_mode}
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/NamedFeatures"},
                                        {"$ref": "#/components/schemas/InputsBatch"},
                                        {"$ref": "#/components/schemas/InstancesBatch"},
                                    ]
                                },
                                "examples": {
                                    "named": {"value": example_row},
                                    "inputs": {"value": {"inputs": [list(example_row.values())]}},
                                    "instances": {"value": {"instances": [example_row], "return": "both"}},
                                },
                            }
                        },
                    },
                    "responses": {
                        "200": _response(
                            "Named form: each class probability and the target. Batches: `predictions` "
                            "(labels, or probability objects with return=probabilities) and, with "
                            "return=both, `probabilities`.",
                            {
                                "oneOf": [
                                    named_answer,
                                    {
                                        "type": "object",
                                        "properties": {
                                            "predictions": {
                                                "type": "array",
                                                "items": {"oneOf": [label_schema, probabilities]},
                                            },
                                            "probabilities": {"type": "array", "items": probabilities},
                                        },
                                    },
                                ]
                            },
                        ),
                        **_errors(400, *checked_errors, 413, 415, 422),
                    },
                }
            },
            "/v1/model": {
                "get": {
                    "summary": "The model: schema, classes, label map, version and sha256",
                    **checked,
                    "responses": {
                        "200": _response("The model.", {"type": "object"}),
                        **_errors(*checked_errors),
                    },
                }
            },
            f"/v2/models/{model.name}/infer": {
                "post": {
                    "summary": "Open Inference Protocol (KServe v2) inference",
                    **checked,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}}
                        },
                    },
                    "responses": {
                        "200": _response(
                            "Output tensors: label (or predict) and probabilities.", {"type": "object"}
                        ),
                        **_errors(400, *checked_errors, 404, 413, 415, 422),
                    },
                }
            },
            f"/v2/models/{model.name}": {
                "get": {
                    "summary": "Open Inference Protocol model metadata",
                    **checked,
                    "responses": {
                        "200": _response("Inputs and outputs.", {"type": "object"}),
                        **_errors(*checked_errors),
                    },
                }
            },
            f"/v2/models/{model.name}/ready": {"get": {"summary": "Is the model ready", "responses": _ok()}},
            "/v2/health/live": {"get": {"summary": "Is the server alive", "responses": _ok()}},
            "/v2/health/ready": {"get": {"summary": "Is the server ready", "responses": _ok()}},
            "/healthz": {"get": {"summary": "Liveness", "responses": _ok()}},
            "/readyz": {"get": {"summary": "Readiness (503 while shutting down)", "responses": _ok()}},
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics, summed over workers",
                    "responses": {"200": {"description": "Prometheus text format."}},
                }
            },
            "/": {"get": {"summary": "Welcome: model name and version", "responses": _ok()}},
        },
        "components": {
            "schemas": {
                "NamedFeatures": {
                    "type": "object",
                    "properties": {**features, "return": return_mode},
                    "required": list(model.names),
                    "additionalProperties": False,
                    "example": example_row,
                },
                "InputsBatch": {
                    "type": "object",
                    "properties": {"inputs": {**rows, "items": row_list}, "return": return_mode},
                    "required": ["inputs"],
                    "additionalProperties": False,
                },
                "InstancesBatch": {
                    "type": "object",
                    "description": "Vertex AI / KServe v1 style: rows as lists or as named-feature objects.",
                    "properties": {
                        "instances": {**rows, "items": {"oneOf": [row_list, row_object]}},
                        "return": return_mode,
                    },
                    "required": ["instances"],
                    "additionalProperties": False,
                },
                "InferenceRequest": {
                    "type": "object",
                    "description": f"One tensor of shape [rows, {width}], or one tensor per feature "
                    "named after it with shape [rows].",
                    "properties": {
                        "id": {"type": "string"},
                        "inputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "shape": {"type": "array", "items": {"type": "integer"}},
                                    "datatype": {"type": "string", "example": "FP64"},
                                    "data": {"type": "array", "items": {}},
                                },
                                "required": ["name", "shape", "datatype", "data"],
                            },
                        },
                        "outputs": {
                            "type": "array",
                            "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                        },
                    },
                    "required": ["inputs"],
                },
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                },
                "ValidationError": {
                    "type": "object",
                    "properties": {
                        "error": {"type": "string"},
                        "fields": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                            "description": "What is wrong, by path: petal_width, inputs/3/2, instances/0/x.",
                        },
                    },
                    "required": ["error"],
                },
            },
            **(
                {"securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}}
                if keys_checked
                else {}
            ),
        },
    }
    return document


def _ok() -> dict:
    return {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}
