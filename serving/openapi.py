"""The OpenAPI 3 document for this model: every feature named and typed, every request form."""

from __future__ import annotations

from serving import openapi_inference
from serving.validation import RETURN_MODES

FEATURE_SCHEMAS = {
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "boolean": {"oneOf": [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]}]},
    "string": {"type": "string"},
}
EXAMPLES = {"number": 1.0, "integer": 1, "boolean": 1, "string": "text"}


def feature_schema(feature) -> dict:
    """A feature's schema: its type, the values it knows (an enum when it takes no others), and
    `nullable` when it may be missing."""
    schema = dict(FEATURE_SCHEMAS[feature.type])
    if feature.categories:
        key = "enum" if not feature.other_values else "x-known-values"
        schema[key] = list(feature.categories)
    if feature.nullable:
        schema = (
            {**schema, "nullable": True}
            if "oneOf" not in schema
            else {"oneOf": schema["oneOf"], "nullable": True}
        )
    return schema


def example_value(feature):
    return feature.categories[0] if feature.categories else EXAMPLES[feature.type]


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


SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
}


def build(model, *, max_rows: int, max_body_bytes: int, keys_checked: bool, bearer: bool = False) -> dict:
    """The document; `keys_checked` adds the x-api-key security scheme to the checked routes, or
    with `bearer` (the identity mode) the Authorization: Bearer <JWT> one."""
    features = {feature.name: feature_schema(feature) for feature in model.features}
    example_row = {feature.name: example_value(feature) for feature in model.features}
    # A nullable feature may be left out of a named row (OpenAPI 3.0 wants `required` non-empty).
    given = [feature.name for feature in model.features if not feature.nullable]
    required = {"required": given} if given else {}
    width = len(model.features)
    # OpenAPI 3.0 has one schema for every item of an array: the one all columns share, else a union
    # wide enough for each (booleans are taken as true/false in a list row too).
    schemas = [features[feature.name] for feature in model.features]
    if all(schema == schemas[0] for schema in schemas):
        value = schemas[0]
    else:
        kinds = {feature.type for feature in model.features}
        types = ["number"] * bool(kinds - {"boolean", "string"}) + ["boolean"] * ("boolean" in kinds)
        value = {"anyOf": [{"type": kind} for kind in types + ["string"] * ("string" in kinds)]}
        if len(value["anyOf"]) == 1:
            value = value["anyOf"][0]
        if any(feature.nullable for feature in model.features):
            value = {**value, "nullable": True}
    row_list = {
        "type": "array",
        "items": value,
        "minItems": width,
        "maxItems": width,
        "description": "Values in this order: "
        + ", ".join(f"{feature.name} ({feature.type})" for feature in model.features)
        + ".",
    }
    row_object = {"$ref": "#/components/schemas/FeatureRow"}
    row = {"oneOf": [row_list, row_object]}
    return_mode = {
        "type": "string",
        "enum": list(RETURN_MODES),
        "description": "What to return: the label, the class probabilities, or both. "
        "Default: both for a named-feature row (label when the model gives no probabilities), label "
        "for batches. Probabilities need a classifier with predict_proba.",
    }
    if not model.is_classifier:  # a regressor refuses anything else (422)
        return_mode = {"type": "string", "enum": ["label"], "description": "A regressor returns values only."}
    # In the body, null stands for "not chosen"; in the query string the value is always text.
    body_return = {**return_mode, "nullable": True, "enum": [*return_mode["enum"], None]}
    rows = {"type": "array", "minItems": 1, "maxItems": max_rows}
    labels = model.labels if model.is_classifier else None
    label_schema = {"enum": labels} if labels else {"type": "number"}
    probabilities = {
        "type": "object",
        "properties": {str(label): {"type": "number"} for label in model.labels},
        "description": "Class probabilities, keyed by label, in the model's class order.",
    }
    # Closed objects, so that each answer matches exactly one of the two forms.
    named_answer = {
        "type": "object",
        "properties": {
            **{f"{label}_probability": {"type": "number"} for label in model.labels},
            "target": label_schema,
        },
        "additionalProperties": False,
    }
    batch_answer = {
        "type": "object",
        "properties": {
            "predictions": {"type": "array", "items": {"oneOf": [label_schema, probabilities]}},
            "probabilities": {"type": "array", "items": probabilities},
        },
        "required": ["predictions"],
        "additionalProperties": False,
    }
    scheme = "BearerAuth" if bearer else "ApiKey"
    security = [{scheme: []}] if keys_checked else []
    checked = {"security": security} if keys_checked else {}
    checked_errors = (401, 403) if keys_checked else ()
    # Checked, but not for end users: a gateway in front does not expose these (x-private).
    private = {"security": security, "x-private": True} if keys_checked else {}
    description = (
        f"Predictions from {model.name} version {model.version} (sha256 {model.sha256}).\n\n"
        "Typing: `number` takes JSON integers and floats, never booleans; `integer` takes integers "
        "and whole floats such as 3.0; `boolean` takes true/false and 0/1; `string` takes JSON "
        "strings. NaN and Infinity are refused. A feature with an `enum` takes only those values; "
        "`x-known-values` lists the values the model knows but others are taken too. `null` means a "
        "missing value where a feature is `nullable` (a named row may also leave it out). "
        f"Bodies are limited to {max_body_bytes} bytes and {max_rows} rows."
    )
    inference = openapi_inference.paths(model, checked, checked_errors, _errors)
    for base, which in (
        (f"/v2/models/{model.name}", ""),
        (f"/v2/models/{model.name}/versions/{model.version}", f" (version {model.version})"),
    ):
        inference[f"{base}/ready"] = {"get": {"summary": f"Is the model ready{which}", "responses": _ok()}}
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
                        {
                            "name": "return",
                            "in": "query",
                            "required": False,
                            "schema": return_mode,
                            "description": "The same as `return` in the body, which wins when both are "
                            "given. An invalid value is refused (422) wherever it is.",
                        }
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
                                    "instances": {"value": {"instances": [example_row], "return": "label"}},
                                },
                            }
                        },
                    },
                    "responses": {
                        "200": _response(
                            "Named form: each class probability and the target. Batches: `predictions` "
                            "(labels, or probability objects with return=probabilities) and, with "
                            "return=both, `probabilities`.",
                            {"oneOf": [named_answer, batch_answer]},
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
            **inference,
            "/v2": {"get": {"summary": "Open Inference Protocol server metadata", "responses": _ok()}},
            "/v2/health/live": {"get": {"summary": "Is the server alive", "responses": _ok()}},
            "/v2/health/ready": {"get": {"summary": "Is the server ready", "responses": _ok()}},
            "/healthz": {"get": {"summary": "Liveness", "responses": _ok()}},
            "/readyz": {"get": {"summary": "Readiness (503 while shutting down)", "responses": _ok()}},
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics, summed over workers",
                    **private,
                    "responses": {
                        "200": {"description": "Prometheus text format."},
                        **_errors(*checked_errors),
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "Welcome: model name and version",
                    **private,
                    "responses": {**_ok(), **_errors(*checked_errors)},
                }
            },
        },
        "components": {
            "schemas": {
                "NamedFeatures": {
                    "type": "object",
                    "properties": {**features, "return": body_return},
                    **required,
                    "additionalProperties": False,
                    "example": example_row,
                },
                "FeatureRow": {
                    "type": "object",
                    "description": "One row of a batch, features by name.",
                    "properties": features,
                    **required,
                    "additionalProperties": False,
                    "example": example_row,
                },
                "InputsBatch": {
                    "type": "object",
                    "description": "Rows as lists (values in feature order) or as named-feature objects.",
                    "properties": {"inputs": {**rows, "items": row}, "return": body_return},
                    "required": ["inputs"],
                    "additionalProperties": False,
                },
                "InstancesBatch": {
                    "type": "object",
                    "description": "Vertex AI / KServe v1 style: rows as lists or as named-feature objects.",
                    "properties": {
                        "instances": {**rows, "items": row},
                        "return": body_return,
                    },
                    "required": ["instances"],
                    "additionalProperties": False,
                },
                **openapi_inference.schemas(model, max_rows),
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
            **({"securitySchemes": {scheme: SCHEMES[scheme]}} if keys_checked else {}),
        },
    }
    return document


def _ok() -> dict:
    return {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}
