"""The OpenAPI schema's error answers, stated once for every operation.

Every error the API gives has one body (`Error`, see `endpoints.api.errors`), and every operation
lists each status it can answer with it:

    400  a value of the wrong form: what this schema states (operations that take a body)
    401  no credentials, or a bad or expired token (operations that need them)
    403  not allowed: a member's write, an admin-only read, a session write without its CSRF token
    404  no such record for this user, or a page past the last
    406  an Accept header no media type of the answer satisfies
    413  a body larger than the API reads (operations that take a body)
    415  a body in a media type the operation does not read
    422  values of the right form the service cannot take (operations that take a body)
    503  the database is away: come back after Retry-After

plus the statuses a view declares for itself with `errors(...)` (409, 410, 413, 429). See
endpoints.api.errors for which refusal gets which status. Each is a shared response under
`components.responses`, so a generated client learns the shape once.

    REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "endpoints.api.schema.PortalAutoSchema", ...}
    SPECTACULAR_SETTINGS = {"POSTPROCESSING_HOOKS": [..., "endpoints.api.schema.error_responses"], ...}
"""

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from endpoints.api.errors import ErrorSerializer
from endpoints.api.permissions import IsAdmin

ERROR_COMPONENT = "Error"

#: status -> (component name, description)
ERROR_ANSWERS: dict[int, tuple[str, str]] = {
    400: (
        "BadRequest",
        "The input was refused: `detail` says why and `field` names the field at fault; for malformed "
        "input `errors` lists every field's messages.",
    ),
    401: ("Unauthorized", "No credentials were sent, or the token is unknown, revoked or expired."),
    403: ("Forbidden", "You may not do this (writes and some reads are for admins)."),
    404: ("NotFound", "No such record that you may see, or a page past the last one."),
    406: ("NotAcceptable", "The Accept header asks for no media type this operation answers in."),
    409: ("Conflict", "The record's state does not allow this now: `detail` says what stands in the way."),
    410: ("Gone", "The secret was shown once already, or erased (`code` says which)."),
    413: (
        "PayloadTooLarge",
        "The body is larger than the API reads (DATA_UPLOAD_MAX_MEMORY_SIZE; an upload's file: "
        "MODEL_UPLOAD_MAX_BYTES).",
    ),
    415: ("UnsupportedMediaType", "The body's media type is not one this operation reads."),
    422: (
        "UnprocessableEntity",
        "Each value has the form the schema asks for, but they cannot be taken: fields that do not go "
        "together, a record that is not there, a file that does not load (`detail` says which).",
    ),
    429: ("TooManyRequests", "Too many attempts: wait and try again (`Retry-After` says how long)."),
    503: (
        "ServiceUnavailable",
        "A backing service is away: nothing was changed; try again after `Retry-After`.",
    ),
}

#: Statuses answered with a Retry-After header, and whether it is always there.
RETRY_AFTER = {429: False, 503: True}

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
NO_NUL = r"^[^\x00]*$"


class PortalAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, with every operation's error answers, the rules the services
    state for a field (`serializers.stated`), and input bodies closed to unknown fields."""

    def _insert_field_validators(self, field, schema):
        super()._insert_field_validators(field, schema)
        if getattr(field, "blank_refused", False):
            # drf-spectacular offers a blank as an alternative ("oneOf": [..., {"maxLength": 0}]).
            alternatives = schema.pop("oneOf", None)
            schema.update(alternatives[0] if alternatives else {})
            schema.setdefault("minLength", 1)
            schema.pop("default", None)  # required: the service refuses a missing value
        schema.update(getattr(field, "openapi_rules", {}))
        if isinstance(field, serializers.CharField) and not field.read_only:
            # DRF refuses a NUL character in any text (PostgreSQL could not store it).
            if "pattern" in schema:
                schema["allOf"] = [{"pattern": NO_NUL}]
            else:
                schema["pattern"] = NO_NUL

    def _map_basic_serializer(self, serializer, direction):
        from endpoints.api.serializers import InputSerializer

        schema = super()._map_basic_serializer(serializer, direction)
        if isinstance(serializer, InputSerializer):
            schema["additionalProperties"] = False  # InputSerializer refuses fields it does not know
            required = {
                name for name, field in serializer.fields.items() if getattr(field, "service_requires", False)
            }
            if required:
                schema["required"] = sorted({*schema.get("required", []), *required})
        return schema

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        self.resolve_serializer(ErrorSerializer, "response")  # registers the Error component
        responses = operation["responses"]
        self.add_location_headers(responses)
        declared = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
        for code in sorted(declared | self.error_statuses(operation)):
            name, _ = ERROR_ANSWERS[code]
            responses[str(code)] = {"$ref": f"#/components/responses/{name}"}
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def add_location_headers(self, responses: dict) -> None:
        """A record made (201) or an operation queued (202) is answered with its `url` in Location
        too (ServiceViewSet.respond), whenever its body has one."""
        serializers_by_code = self.get_response_serializers()
        if not isinstance(serializers_by_code, dict):
            return
        for code in (201, 202):
            serializer = serializers_by_code.get(code)
            if (
                str(code) in responses
                and serializer is not None
                and "url" in getattr(serializer(), "fields", {})
            ):
                responses[str(code)]["headers"] = {
                    "Location": {
                        "description": "The record's `url`, to read or poll.",
                        "required": True,
                        "schema": {"type": "string", "format": "uri"},
                    }
                }

    def error_statuses(self, operation: dict) -> set[int]:
        """The error statuses every operation of this kind can answer, whatever the view."""
        statuses = {406, 503}
        parameters = operation.get("parameters", [])
        if any(requirement for requirement in operation.get("security", [])):
            statuses.add(401)
            admin_only = any(isinstance(permission, IsAdmin) for permission in self.view.get_permissions())
            if self.method in UNSAFE_METHODS or admin_only:
                statuses.add(403)
        if any(parameter["in"] == "path" for parameter in parameters):
            statuses.add(404)
        if any(parameter["in"] == "query" and parameter["name"] == "page" for parameter in parameters):
            statuses.add(404)  # a page past the last
        if "requestBody" in operation:
            statuses |= {400, 413, 415, 422}
        return statuses


def error_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: the shared error answers, under components.responses."""
    responses = result.setdefault("components", {}).setdefault("responses", {})
    for code, (name, description) in sorted(ERROR_ANSWERS.items()):
        response = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}}},
        }
        if code in RETRY_AFTER:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before trying again.",
                    "required": RETRY_AFTER[code],
                    "schema": {"type": "integer", "minimum": 0},
                }
            }
        responses[name] = response
    return result
