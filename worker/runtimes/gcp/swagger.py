"""The API Gateway config of an endpoint: the serving container's OpenAPI 3 document as Swagger 2.0.

API Gateway takes Swagger 2.0 with Google's extensions. `to_swagger2` converts the serving
document (components -> definitions, requestBody -> a body parameter, nullable/oneOf/anyOf and
3.1 type lists -> what 2.0 can say, servers dropped) and adds what the gateway needs:

- `x-google-backend` with the Cloud Run URL as `address`, `path_translation:
  APPEND_PATH_TO_ADDRESS` written out (its default depends on where it is placed), and the
  endpoint's timeout as `deadline` (the gateway's own default is 15 s and would cut long batches);
- an `api_key` security definition read from the `x-api-key` header only (no query keys), required
  on every operation;
- only the routes end users call (those the serving document marks with `security` and not
  `x-private`), so health, readiness, metrics and docs stay private.

`serving_openapi(model)` is the serving container's `GET /openapi.json` for a model version, made
by the container's own builder from the ModelSpec the container gets as SERVING_MODEL_META.
"""

from __future__ import annotations

import re

from serving.config import Feature
from worker.runtimes.base import ModelSpec

API_KEY_HEADER = "x-api-key"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
# Schema keywords Swagger 2.0 has; others (writeOnly, const, prefixItems, ...) are converted or dropped.
SCHEMA_KEYS = {
    "$ref", "format", "title", "description", "default", "multipleOf", "maximum", "exclusiveMaximum",
    "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
    "uniqueItems", "maxProperties", "minProperties", "required", "enum", "type", "items", "allOf",
    "properties", "additionalProperties", "readOnly", "example",
}  # fmt: skip


def to_swagger2(
    doc: dict,
    *,
    backend: str,
    deadline: float,
    title: str,
    routes: frozenset | None = None,
) -> dict:
    """The Swagger 2.0 document API Gateway serves for `doc` (OpenAPI 3.0 or 3.1).

    `routes` ({(path, method)}) picks the operations to expose; by default, those the document
    marks as needing a key (`security`) and not as private (`x-private`: checked, but not for end
    users, like /metrics), which in the serving document are the end-user routes.
    """
    paths: dict = {}
    used_ids: set[str] = set()
    for path, item in (doc.get("paths") or {}).items():
        shared = item.get("parameters", [])
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            if (
                (path, method) not in routes
                if routes is not None
                else not operation.get("security") or operation.get("x-private")
            ):
                continue
            converted = _operation(path, method, operation, shared, used_ids)
            paths.setdefault(path, {})[method] = converted
    info = doc.get("info") or {}
    return {
        "swagger": "2.0",
        "info": {
            "title": title,
            "version": str(info.get("version", "1")),
            "description": info.get("description", ""),
        },
        "schemes": ["https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "x-google-backend": {
            "address": backend,
            "path_translation": "APPEND_PATH_TO_ADDRESS",
            "deadline": float(deadline),
        },
        "securityDefinitions": {"api_key": {"type": "apiKey", "name": API_KEY_HEADER, "in": "header"}},
        "security": [{"api_key": []}],
        "paths": paths,
        "definitions": {
            name: schema_2(schema)
            for name, schema in ((doc.get("components") or {}).get("schemas") or {}).items()
        },
    }


def _operation(path: str, method: str, operation: dict, shared: list, used_ids: set[str]) -> dict:
    operation_id = operation.get("operationId") or f"{method}_{path}"
    operation_id = re.sub(r"[^A-Za-z0-9_]", "_", operation_id).strip("_") or method
    while operation_id in used_ids:
        operation_id += "_"
    used_ids.add(operation_id)
    converted: dict = {"operationId": operation_id}
    for key in ("summary", "description", "tags"):
        if key in operation:
            converted[key] = operation[key]
    parameters = [
        _parameter(p) for p in [*shared, *operation.get("parameters", [])] if p.get("in") != "cookie"
    ]
    body = operation.get("requestBody")
    if body:
        media, content = _json_content(body.get("content") or {})
        parameters.append(
            {
                "in": "body",
                "name": "body",
                "required": bool(body.get("required")),
                "description": body.get("description", ""),
                "schema": schema_2(content.get("schema", {})),
            }
        )
        if media:
            converted["consumes"] = [media]
    if parameters:
        converted["parameters"] = parameters
    responses = {}
    for status, response in (operation.get("responses") or {"200": {"description": "OK"}}).items():
        entry = {"description": response.get("description") or str(status)}
        _, content = _json_content(response.get("content") or {})
        if "schema" in content:
            entry["schema"] = schema_2(content["schema"])
        responses[str(status)] = entry
    converted["responses"] = responses
    return converted


def _json_content(content: dict) -> tuple[str | None, dict]:
    for media, value in content.items():
        if media.split(";")[0].strip() in ("application/json", "*/*") or media.endswith("+json"):
            return media, value
    return None, {}


def _parameter(parameter: dict) -> dict:
    schema = schema_2(parameter.get("schema", {"type": "string"}))
    converted = {
        "name": parameter["name"],
        "in": parameter["in"],
        "required": bool(parameter.get("required")) or parameter["in"] == "path",
    }
    if parameter.get("description"):
        converted["description"] = parameter["description"]
    # Non-body parameters carry their type inline in 2.0, not under `schema`.
    for key in ("type", "format", "enum", "default", "items", "minimum", "maximum"):
        if key in schema:
            converted[key] = schema[key]
    converted.setdefault("type", "string")
    return converted


def schema_2(schema) -> dict:
    """One JSON schema, OpenAPI 3.x dialect -> Swagger 2.0 dialect (recursively)."""
    if not isinstance(schema, dict):
        return {}
    schema = dict(schema)
    nullable = bool(schema.pop("nullable", False))
    kind = schema.get("type")
    if isinstance(kind, list):  # 3.1: ["number", "null"]
        kinds = [k for k in kind if k != "null"]
        nullable = nullable or len(kinds) < len(kind)
        schema["type"] = kinds[0] if len(kinds) == 1 else None
        if schema["type"] is None:
            del schema["type"]
    for keyword in ("oneOf", "anyOf"):
        alternatives = schema.pop(keyword, None)
        if alternatives is None:
            continue
        real = [alt for alt in alternatives if alt != {"type": "null"}]
        nullable = nullable or len(real) < len(alternatives)
        if len(real) == 1:
            merged = schema_2(real[0])
            schema = {
                **merged,
                **{k: v for k, v in schema.items() if k in ("description", "title", "default")},
            }
        # Several real alternatives: 2.0 cannot say "one of"; the gateway does not validate bodies
        # anyway (GOOGLE-APIS d.2), so the schema stays open and the description says what is accepted.
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(bound), int | float) and not isinstance(schema.get(bound), bool):
            schema[flag] = schema.pop(bound)  # 3.1 numeric form -> 2.0 boolean form
            schema[bound] = True
    if "examples" in schema and "example" not in schema and isinstance(schema["examples"], list):
        schema["example"] = schema["examples"][0] if schema["examples"] else None
    converted = {key: value for key, value in schema.items() if key in SCHEMA_KEYS}
    if "$ref" in converted:
        converted = {"$ref": converted["$ref"].replace("#/components/schemas/", "#/definitions/")}
    if "items" in converted:
        converted["items"] = schema_2(converted["items"])
    if "properties" in converted:
        converted["properties"] = {name: schema_2(value) for name, value in converted["properties"].items()}
    if isinstance(converted.get("additionalProperties"), dict):
        converted["additionalProperties"] = schema_2(converted["additionalProperties"])
    if "allOf" in converted:
        converted["allOf"] = [schema_2(part) for part in converted["allOf"]]
    if nullable and "$ref" not in converted:
        converted["x-nullable"] = True
    return converted


def serving_openapi(model: ModelSpec) -> dict:
    """The OpenAPI 3 document the serving container publishes at /openapi.json for `model`.

    Built by the container's own builder (`serving.openapi.build`, the code behind that route) from
    what the container learns from SERVING_MODEL_META, with keys checked, so the routes end users
    call are exactly the operations that carry `security`. The worker cannot fetch the document
    from the running revision: the service is private to the gateway.
    """
    from serving.config import Settings
    from serving.openapi import build

    return build(
        _ServingModel(model),
        max_rows=Settings.max_rows,  # the container's defaults
        max_body_bytes=Settings.max_body_bytes,
        keys_checked=True,
    )


class _ServingModel:
    """What `serving.openapi.build` reads of a loaded model, taken from the ModelSpec instead."""

    def __init__(self, model: ModelSpec):
        self.name = model.name
        self.version = model.version
        self.sha256 = model.sha256
        self.features = tuple(
            Feature.from_json(item, f"schema[{index}]") for index, item in enumerate(model.input_schema)
        )
        self.names = [feature.name for feature in self.features]
        self.is_classifier = bool(model.classes)
        # Not recorded with a version: the gateway's copy lists probabilities for any classifier
        # (the gateway validates no body; one without them answers 422 when asked).
        self.has_proba = self.is_classifier
        self.labels = [model.label_map.get(str(value), value) for value in model.classes]
