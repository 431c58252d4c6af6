"""Turn service errors into the API's JSON error bodies, in one place."""

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from endpoints.services.errors import NotAllowed, ServiceError

STATUS_FOR_CODE = {
    "permission_denied": status.HTTP_403_FORBIDDEN,
    "conflict": status.HTTP_409_CONFLICT,
    "gone": status.HTTP_410_GONE,
    "not_found": status.HTTP_404_NOT_FOUND,
}


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        code = STATUS_FOR_CODE.get(exc.code, status.HTTP_400_BAD_REQUEST)
        if isinstance(exc, NotAllowed):
            code = status.HTTP_403_FORBIDDEN
        return Response(exc.as_dict(), status=code)
    return drf_exception_handler(exc, context)
