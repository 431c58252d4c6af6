"""Pages of a listing, by number, as the schema says: `?page=` is a whole number from 1.

DRF's own pagination also reads `?page=last`, an empty `?page=`, and the last of repeated
`?page=` values; here each of those is a page that is not there (404), like a page past the last.

    GET /api/v1/endpoints/?page=2
"""

import re

from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination

WHOLE_NUMBER = re.compile(r"[0-9]+")


class PagePagination(PageNumberPagination):
    last_page_strings = ()

    def get_page_number(self, request, paginator):
        values = request.query_params.getlist(self.page_query_param)
        if not values:
            return 1
        if len(values) > 1 or not WHOLE_NUMBER.fullmatch(values[0]):
            raise NotFound(self.invalid_page_message)
        return values[0]

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters
