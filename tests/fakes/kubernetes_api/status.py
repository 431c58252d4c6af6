"""The API server's errors, as `Status` objects (kind Status, status Failure, a reason, a code).

The messages follow the API server's wording (`deployments.apps "web" not found`, `Operation cannot
be fulfilled on ...: the object has been modified; ...`); a 422 Invalid carries `details.causes`,
one per field error, each naming the field by its JSON path (`spec.template.metadata.labels`).
"""

from __future__ import annotations

import json

from tests.fakes.rest_server import HttpError

#: HTTP code of each StatusReason the fake answers with (apimachinery's metav1.StatusReason).
CODES = {
    "BadRequest": 400,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "AlreadyExists": 409,
    "Conflict": 409,
    "Invalid": 422,
    "UnsupportedMediaType": 415,
    "TooManyRequests": 429,
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "Timeout": 504,
}
#: What the API server says with each of the errors a client should retry.
TRANSIENT = {
    "TooManyRequests": ("Too many requests, please try again later.", {"retryAfterSeconds": 1}),
    "InternalError": ("Internal error occurred: etcdserver: request timed out", {}),
    "ServiceUnavailable": ("the server is currently unable to handle the request", {}),
    "Timeout": (
        "the server was unable to return a response in the time allotted, but may still be processing "
        "the request",
        {"retryAfterSeconds": 1},
    ),
}


class KubeError(HttpError):
    """A failed call, answered with a Kubernetes `Status` body instead of Google's error format."""

    def __init__(self, reason: str, message: str, *, details: dict | None = None, code: int | None = None):
        super().__init__(code or CODES[reason], message, reason=reason)
        self.status_details = details

    def body(self) -> dict:
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.status,
        }
        if self.status_details is not None:
            status["details"] = self.status_details
        return status


def qualified(plural: str, group: str) -> str:
    """`deployments.apps`, or `secrets` for the core group, as the API server names a resource."""
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> KubeError:
    return KubeError(
        "NotFound",
        f'{qualified(plural, group)} "{name}" not found',
        details={"name": name, "group": group, "kind": plural},
    )


def already_exists(plural: str, group: str, name: str) -> KubeError:
    return KubeError(
        "AlreadyExists",
        f'{qualified(plural, group)} "{name}" already exists',
        details={"name": name, "group": group, "kind": plural},
    )


def conflict(plural: str, group: str, name: str) -> KubeError:
    return KubeError(
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": '
        "the object has been modified; please apply your changes to the latest version and try again",
        details={"name": name, "group": group, "kind": plural},
    )


def transient(reason: str) -> KubeError:
    """A failure a client should retry, as the API server words it."""
    if reason not in TRANSIENT:
        raise ValueError(f"reason must be one of {', '.join(TRANSIENT)}, not {reason!r}")
    message, details = TRANSIENT[reason]
    return KubeError(reason, message, details=details or None)


def bad_request(message: str) -> KubeError:
    return KubeError("BadRequest", message)


class FieldError:
    """One field's error, as apimachinery's field.Error: a type (reason), the field path, a detail."""

    def __init__(self, reason: str, field: str, detail: str, value: object = None):
        self.reason = reason  # FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, ...
        self.field = field
        self.detail = detail
        self.value = value

    def message(self) -> str:
        if self.reason == "FieldValueRequired":
            return f"Required value: {self.detail}" if self.detail else "Required value"
        if self.reason == "FieldValueForbidden":
            return f"Forbidden: {self.detail}"
        if self.reason == "FieldValueNotSupported":
            return f"Unsupported value: {go_value(self.value)}: {self.detail}"
        return f"Invalid value: {go_value(self.value)}: {self.detail}"


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> KubeError:
    """422 Invalid, naming every field at fault, as the API server reports a failed validation."""
    listed = ", ".join(f"{error.field}: {error.message()}" for error in errors)
    joined = f"[{listed}]" if len(errors) > 1 else listed
    qualified_kind = f"{kind}.{group}" if group else kind
    return KubeError(
        "Invalid",
        f'{qualified_kind} "{name}" is invalid: {joined}',
        details={
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [
                {"reason": error.reason, "message": error.message(), "field": error.field} for error in errors
            ],
        },
    )


def go_value(value: object) -> str:
    """A value as the API server's messages print it (Go's %#v): "web", 0, map[string]string{"a":"b"}."""
    if isinstance(value, dict):
        inner = ", ".join(f'"{key}":{go_value(item)}' for key, item in value.items())
        kind = "string" if all(isinstance(item, str) for item in value.values()) else "interface {}"
        return f"map[string]{kind}{{{inner}}}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    return str(value)
