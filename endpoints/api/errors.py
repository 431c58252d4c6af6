"""Turn every API error into one JSON shape, in one place.

    {"detail": "Traffic must be a whole percentage from 1 to 100.", "field": "traffic_percent",
     "code": "invalid"}

Service errors carry their own message and field. DRF's own errors (malformed input, not signed
in, not found) are reshaped to match: a validation error names its first field in `field` and
keeps DRF's full per-field listing under `errors`.

The status says what kind of refusal it is: 400 for a value of the wrong form (what the OpenAPI
schema states: types, lengths, ranges, patterns, required fields); 422 for values of the right
form that the service cannot take (`Unprocessable`: fields that do not go together, a name or id
of a record that is not there, a file that does not load); 409 for a record whose state stands in
the way; 403, 404, 410, 413 and 503 as their codes say. Paths under /api/ that match no route, and
server errors there, answer in the same shape instead of the dashboard's HTML pages; while the
database is away, both answer 503 with Retry-After.
"""

import sys

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from endpoints.services.errors import NotAllowed, ServiceError, Unprocessable

STATUS_FOR_CODE = {
    "permission_denied": status.HTTP_403_FORBIDDEN,
    "conflict": status.HTTP_409_CONFLICT,
    "gone": status.HTTP_410_GONE,
    # An issued key's secret that is erased: by a revoke, or when its reveal window passed.
    "revoked": status.HTTP_410_GONE,
    "expired_unseen": status.HTTP_410_GONE,
    "not_found": status.HTTP_404_NOT_FOUND,
    "unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
    "too_large": status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
}


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    """The body of every error answer (for the OpenAPI schema)."""

    detail = serializers.CharField()
    field = serializers.CharField(allow_null=True)
    code = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Every field's messages when the request has more than one problem.",
    )


def _first_error(detail, path: tuple = ()):
    """The first leaf of a nested validation error: ("traffic_percent", ErrorDetail(...))."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            found = _first_error(value, path if key == "non_field_errors" else (*path, str(key)))
            if found:
                return found
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            found = _first_error(value, (*path, str(index)) if isinstance(value, (dict, list)) else path)
            if found:
                return found
    else:
        return ".".join(path), detail
    return None


def _leaf_codes(detail) -> set:
    if isinstance(detail, dict):
        return set().union(*(_leaf_codes(value) for value in detail.values()))
    if isinstance(detail, list):
        return set().union(*(_leaf_codes(value) for value in detail))
    return {getattr(detail, "code", None)}


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        code = STATUS_FOR_CODE.get(exc.code, status.HTTP_400_BAD_REQUEST)
        if isinstance(exc, NotAllowed):
            code = status.HTTP_403_FORBIDDEN
        elif isinstance(exc, Unprocessable):
            code = status.HTTP_422_UNPROCESSABLE_ENTITY
        headers = (
            {"Retry-After": str(RETRY_AFTER_SECONDS)} if code == status.HTTP_503_SERVICE_UNAVAILABLE else None
        )
        body = exc.as_dict()
        if exc.also:  # every problem at once, as the dashboard's form shows them
            errors: dict[str, list[str]] = {}
            for each in (exc, *exc.also):
                errors.setdefault(each.field or "non_field_errors", []).append(each.message)
            body["errors"] = errors
        return Response(body, status=code, headers=headers)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        field, message = _first_error(exc.detail) or ("", "Invalid input.")
        if _leaf_codes(exc.detail) == {"does_not_exist"}:
            # Every value has its form, but names a record that is not there (or not yours).
            response.status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
        response.data = {
            "detail": str(message),
            "field": field or None,
            "code": getattr(message, "code", "invalid"),
            "errors": exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail},
        }
    elif isinstance(response.data, dict) and "detail" in response.data:
        detail = response.data["detail"]
        response.data = {
            "detail": str(detail),
            "field": None,
            "code": getattr(detail, "code", None) or getattr(exc, "default_code", "error"),
        }
    return response


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception):
    """handler404: JSON under /api/, the dashboard's page elsewhere."""
    if _is_api(request):
        body = {"detail": f"No API route matches {request.path}.", "field": None, "code": "not_found"}
        return JsonResponse(body, status=status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception)


def bad_request(request, exception):
    """handler400: JSON under /api/ (413 for a body past DATA_UPLOAD_MAX_MEMORY_SIZE), the page
    elsewhere."""
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        body = {
            "detail": f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes, the most "
            "the API reads.",
            "field": None,
            "code": "too_large",
        }
        return JsonResponse(body, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    body = {"detail": "The request could not be read.", "field": None, "code": "bad_request"}
    return JsonResponse(body, status=status.HTTP_400_BAD_REQUEST)


DATABASE_AWAY = "The portal's database is not answering; nothing was changed. Try again in a moment."
RETRY_AFTER_SECONDS = 5


def server_error(request):
    """handler500: JSON under /api/, Django's page elsewhere; 503 while the database is away.

    The database's absence is not a server bug: the caller is told to come back, with Retry-After,
    in a page that needs no database to render.
    """
    exc = sys.exc_info()[1]
    if isinstance(exc, (OperationalError, InterfaceError)):
        if _is_api(request):
            body = {"detail": DATABASE_AWAY, "field": None, "code": "unavailable"}
            response = JsonResponse(body, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        else:
            page = f"<!doctype html><title>Unavailable</title><h1>Unavailable</h1><p>{DATABASE_AWAY}</p>"
            response = HttpResponse(page, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if _is_api(request):
        body = {"detail": "The server failed to answer; the error is logged.", "field": None, "code": "error"}
        return JsonResponse(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return defaults.server_error(request)
