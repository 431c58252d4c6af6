"""Generated bodies on every write route of the REST API: a client mistake is never a 500.

Each route gets objects with its own field names holding any JSON value (and the values it takes),
any JSON at all, and bytes that are not JSON. Every answer is a success or a 4xx in the API's one
error shape. Examples are derandomized, so CI runs the ones a run here does.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from endpoints.services.allowlist import allowlist_add
from endpoints.services.endpoints import SETTINGS_FIELDS
from endpoints.services.keys import key_request_create

EXAMPLES = settings(max_examples=60)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", " ", "iris-prod", "1", "-1", "0", "api_key", "10.0.0.0/8", "::/0", "a" * 400])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)

ROUTES = {
    "model create": ("post", "/api/v1/models/", ["name", "description"]),
    "endpoint create": (
        "post",
        "/api/v1/endpoints/",
        ["name", *SETTINGS_FIELDS],
    ),
    "endpoint edit": (
        "patch",
        "/api/v1/endpoints/iris-prod/",
        list(SETTINGS_FIELDS),
    ),
    "deploy": ("post", "/api/v1/endpoints/iris-prod/deploy/", ["model_version", "traffic_percent"]),
    "plan": ("post", "/api/v1/endpoints/iris-prod/plan/", ["model_version", "traffic_percent"]),
    "allowlist add": ("post", "/api/v1/endpoints/iris-prod/allowlist/", ["cidr", "note"]),
    "key request": ("post", "/api/v1/key-requests/", ["endpoint", "team", "reason", "valid_days"]),
    "approve": ("post", "/api/v1/key-requests/{request}/approve/", ["note"]),
    "reject": ("post", "/api/v1/key-requests/{request}/reject/", ["note"]),
    "rotate": ("post", "/api/v1/keys/1/rotate/", ["overlap_hours"]),
    "token": ("post", "/api/v1/auth/token/", ["username", "password"]),
}


def bodies(field_names: list[str]):
    named = st.fixed_dictionaries({}, optional=dict.fromkeys(field_names, values))
    return (
        named.map(lambda document: json.dumps(document).encode())
        | values.map(lambda document: json.dumps(document).encode())
        | st.binary(max_size=40)
    )


@pytest.fixture
def world(admin, member, team, endpoint, iris_version):
    """An endpoint with an allowlist entry and a pending key request, for the routes to act on."""
    allowlist_add(user=admin, endpoint=endpoint, cidr="10.0.0.0/8")
    request = key_request_create(user=member, endpoint=endpoint, team=team, reason="a key for tests")
    client = APIClient()
    client.force_authenticate(admin)
    return client, request


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_write_route_answers_any_body_without_a_server_error(
    world, route, django_capture_on_commit_callbacks
):
    client, key_request = world
    method, path, field_names = ROUTES[route]
    path = path.format(request=key_request.pk)

    @EXAMPLES
    @given(body=bodies(field_names))
    def send(body):
        with django_capture_on_commit_callbacks(execute=False):
            response = getattr(client, method)(path, data=body, content_type="application/json")
        assert response.status_code < 500, response.content[:300]
        if response.status_code >= 400:
            document = response.json()
            assert document["detail"] and "code" in document, document

    send()
