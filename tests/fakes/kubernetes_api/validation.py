"""Validate an object as the API server does before it stores it.

Two layers, in the server's order:

1. Decoding against the Kubernetes OpenAPI schema (`kubernetes_validate`, strict schemas of
   `SCHEMA_VERSION`): a value of the wrong JSON type is a 400 BadRequest; an unknown field follows
   the request's `fieldValidation` (Strict: 400 BadRequest naming every unknown field; Warn, the
   default since v1.23: dropped, with a `Warning` header; Ignore: dropped); a missing required
   property or a value outside an enum is a 422 Invalid.
   Then the defaults (`defaults.py`), as the server fills them in while decoding.
2. The semantic rules the schema cannot say (`rules.py`), all of an object's at once, as one 422
   Invalid whose `details.causes` name each field as `spec.template.spec.containers[0].image`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import kubernetes_validate

from tests.fakes.kubernetes_api.defaults import apply_defaults
from tests.fakes.kubernetes_api.kinds import Kind
from tests.fakes.kubernetes_api.rules import semantic_errors
from tests.fakes.kubernetes_api.status import FieldError, KubeError, bad_request, invalid

SCHEMA_VERSION = "1.37"
FIELD_VALIDATION = ("Strict", "Warn", "Ignore")

GO_TYPES = {
    "integer": "int32",
    "string": "string",
    "boolean": "bool",
    "number": "float64",
    "object": "struct",
    "array": "slice",
}


def validate(
    kind: Kind, obj: dict, old: dict | None = None, *, field_validation: str | None = None
) -> tuple[dict, list[str]]:
    """The object as it will be stored (unknown fields dropped unless Strict) and the warnings to send;
    raises KubeError for an object the API server refuses."""
    obj, warnings = _decode(kind, obj, field_validation or "Warn")
    apply_defaults(kind.kind, obj)
    errors = list(semantic_errors(kind, obj, old))
    if errors:
        raise invalid(kind.kind, kind.group, obj.get("metadata", {}).get("name", ""), errors)
    return obj, warnings


# --- layer 1: the schema -------------------------------------------------------------------------


def field_path(parts: Iterable[Any]) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _decode(kind: Kind, obj: dict, field_validation: str) -> tuple[dict, list[str]]:
    if field_validation not in FIELD_VALIDATION:
        raise bad_request(f'fieldValidation parameter unsupported: "{field_validation}"')
    obj = copy.deepcopy(obj)
    if obj.get("kind") != kind.kind or obj.get("apiVersion") != kind.api_version:
        raise bad_request(
            f"the API version in the data ({obj.get('apiVersion')}) does not match the expected API version "
            f"({kind.api_version})"
            if obj.get("kind") == kind.kind
            else f'Object kind "{obj.get("kind")}" does not match the resource kind "{kind.kind}"'
        )
    unknown: list[str] = []
    while True:
        try:
            kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
            break
        except kubernetes_validate.ValidationError as error:
            if error.validator != "additionalProperties":
                raise _schema_error(kind, obj, error) from None
            parent = _at(obj, error.path)
            allowed = set(error.schema.get("properties", {}))
            for extra in sorted(set(parent) - allowed):
                unknown.append(field_path([*error.path, extra]))
                del parent[extra]
    if unknown and field_validation == "Strict":
        listed = ", ".join(f'unknown field "{path}"' for path in unknown)
        raise bad_request(f"strict decoding error: {listed}")
    warnings = [f'unknown field "{path}"' for path in unknown] if field_validation == "Warn" else []
    return obj, warnings


def _at(obj: Any, path: Iterable[Any]) -> Any:
    for part in path:
        obj = obj[part]
    return obj


def _schema_error(kind: Kind, obj: dict, error: kubernetes_validate.ValidationError) -> KubeError:
    name = obj.get("metadata", {}).get("name", "")
    path = list(error.path)
    if error.validator == "required":
        missing = [prop for prop in error.validator_value if prop not in error.instance]
        fields = [FieldError("FieldValueRequired", field_path([*path, prop]), "") for prop in missing]
        return invalid(kind.kind, kind.group, name, fields)
    if error.validator == "enum":
        supported = ", ".join(f'"{value}"' for value in error.validator_value)
        detail = f"supported values: {supported}"
        return invalid(
            kind.kind,
            kind.group,
            name,
            [FieldError("FieldValueNotSupported", field_path(path), detail, error.instance)],
        )
    if error.validator in ("type", "oneOf", "anyOf", "format"):
        expected = error.validator_value if error.validator == "type" else "value"
        expected = expected[0] if isinstance(expected, list) else expected
        got, go_type = type(error.instance).__name__, GO_TYPES.get(expected, expected)
        return bad_request(
            f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
            f"json: cannot unmarshal {got} into Go struct field {field_path(path)} of type {go_type}"
        )
    return invalid(
        kind.kind,
        kind.group,
        name,
        [FieldError("FieldValueInvalid", field_path(path), error.message, error.instance)],
    )
