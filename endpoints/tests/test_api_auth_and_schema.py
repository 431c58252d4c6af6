"""Signing in to the API, the audit log, and the OpenAPI schema with its local Swagger UI."""

import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command
from rest_framework.test import APIClient

from endpoints.models import ApiToken, AuditEvent


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def test_a_username_and_password_buy_a_token_that_signs_requests(admin, endpoint):
    response = api().post(
        "/api/v1/auth/token/", {"username": "ada", "password": "ada-password-1"}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    stored = ApiToken.objects.get(user=admin)
    assert token not in stored.digest and stored.prefix == token[:8]
    assert response.json()["expiry"] == stored.expiry.isoformat().replace("+00:00", "Z")

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    listing = client.get("/api/v1/endpoints/")
    assert listing.status_code == 200
    assert listing.json()["results"][0]["name"] == "iris-prod"


def test_a_wrong_password_buys_no_token(admin):
    response = api().post("/api/v1/auth/token/", {"username": "ada", "password": "guess"}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == "Unable to log in with provided credentials."
    assert not ApiToken.objects.exists()


def test_a_bad_token_is_refused(endpoint):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    response = client.get("/api/v1/endpoints/")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token.", "field": None, "code": "authentication_failed"}


def test_the_browser_session_works_too(client, member, endpoint):
    client.force_login(member)
    response = client.get("/api/v1/endpoints/iris-prod/")
    assert response.status_code == 200
    assert response.json()["name"] == "iris-prod"


def test_an_admin_reads_the_audit_log_newest_first(admin, endpoint):
    from endpoints.services.endpoints import endpoint_update

    endpoint_update(user=admin, endpoint=endpoint, memory="1Gi")
    response = api(admin).get("/api/v1/audit/")
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["action"] for row in rows] == ["endpoint.update", "endpoint.create"]
    assert rows[0]["actor"] == "ada"
    assert rows[0]["target_repr"] == "iris-prod"
    assert rows[0]["details"] == {"memory": "1Gi"}
    assert response.json()["count"] == AuditEvent.objects.count()


def test_a_team_member_cannot_read_the_audit_log(member, endpoint):
    response = api(member).get("/api/v1/audit/")
    assert response.status_code == 403
    assert response.json()["detail"] == "Only an admin can do this."


def test_the_schema_is_served_and_describes_the_api(db):
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in [
        "/api/v1/auth/token/",
        "/api/v1/models/{id}/versions/",
        "/api/v1/endpoints/{name}/deploy/",
        "/api/v1/endpoints/{name}/allowlist/{entry_id}/",
        "/api/v1/deployments/{id}/rollback/",
        "/api/v1/key-requests/{id}/reveal/",
        "/api/v1/keys/{id}/revoke/",
        "/api/v1/audit/",
        "/api/v1/auth/tokens/",
        "/api/v1/auth/tokens/{id}/",
    ]:
        assert path in paths, path
    assert "202" in paths["/api/v1/endpoints/{name}/deploy/"]["post"]["responses"]
    upload = paths["/api/v1/models/{id}/versions/"]["post"]["requestBody"]["content"]
    assert list(upload) == ["multipart/form-data"]


def test_the_schema_generates_without_warnings(db, tmp_path):
    # --fail-on-warn raises on the first warning; --validate checks it against the OpenAPI spec.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi:")


def test_the_docs_page_loads_swagger_ui_from_our_own_static_files(db):
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    asset = APIClient().get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert asset.status_code == 200
    asset.close()


def test_a_path_under_the_api_that_matches_no_route_answers_json(admin, client):
    response = api(admin).post("/api/v1/key-requests//approve/")
    assert response.status_code == 404
    assert response.json() == {
        "detail": "No API route matches /api/v1/key-requests//approve/.",
        "field": None,
        "code": "not_found",
    }
    page = client.get("/no-such-page/")
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")


def test_a_server_error_under_the_api_answers_json(admin, monkeypatch):
    from endpoints.api import views

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(views.EndpointViewSet, "list", fail)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(admin)
    response = client.get("/api/v1/endpoints/")
    assert response.status_code == 500
    assert response.json()["code"] == "error"
    assert "boom" not in response.content.decode()


def served_schema() -> dict:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi")
    return yaml.safe_load(response.content)


def test_every_operation_lists_its_error_answers_with_the_one_error_shape(db):
    schema = served_schema()
    shared = schema["components"]["responses"]
    assert shared["NotFound"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert shared["ServiceUnavailable"]["headers"]["Retry-After"]["required"] is True
    assert set(schema["components"]["schemas"]["Error"]["required"]) == {"detail", "field", "code"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = {code for code in operation["responses"] if int(code) >= 400}
            signed_in = path != "/api/v1/auth/token/"
            assert ("401" in codes) == signed_in, (method, path)
            assert {"406", "503"} <= codes, (method, path)
            if "{" in path or any(p["name"] == "page" for p in operation.get("parameters", [])):
                assert "404" in codes, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415", "422"} <= codes, (method, path)
            if method != "get" and signed_in:
                assert "403" in codes, (method, path)
            for code in codes:
                assert operation["responses"][code]["$ref"].startswith("#/components/responses/"), (
                    method,
                    path,
                )


def test_the_schema_states_the_rules_the_services_enforce(db):
    schemas = served_schema()["components"]["schemas"]
    endpoint = schemas["EndpointCreateRequest"]
    assert endpoint["required"] == ["name"] and endpoint["additionalProperties"] is False
    name = endpoint["properties"]["name"]
    assert (name["minLength"], name["maxLength"], name["pattern"]) == (
        1,
        40,
        "^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$",
    )
    assert endpoint["properties"]["region"]["minLength"] == 1
    assert (
        endpoint["properties"]["max_instances"]["minimum"],
        endpoint["properties"]["max_instances"]["maximum"],
    ) == (
        1,
        1000,
    )
    assert schemas["KeyRequestCreateRequest"]["required"] == ["endpoint", "reason"]
    assert schemas["ModelVersionUploadRequest"]["required"] == ["artifact"]
    assert schemas["AuditEvent"]["properties"]["actor"]["nullable"] is True
    assert schemas["AccessPolicyState"]["properties"]["pending_since"]["nullable"] is True


def test_an_endpoint_name_with_spaces_around_it_is_refused_as_its_schema_says(admin):
    response = api(admin).post("/api/v1/endpoints/", {"name": " iris"}, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "name"
    assert response.json()["detail"].startswith("Use 1-40 lowercase letters")


def test_a_number_where_text_is_expected_is_refused(admin):
    response = api(admin).post("/api/v1/models/", {"name": 0}, format="json")
    assert response.status_code == 400
    assert (response.json()["field"], response.json()["detail"]) == ("name", "Not a valid string.")


def test_a_body_past_the_size_the_api_reads_answers_413_in_the_error_shape(admin, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"name": "big", "description": "' + "a" * 2000 + '"}'
    response = api(admin).post("/api/v1/models/", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json() == {
        "detail": "The body is larger than 1,000 bytes, the most the API reads.",
        "field": None,
        "code": "too_large",
    }


def test_an_accept_header_the_api_cannot_satisfy_answers_406_in_the_error_shape(admin):
    response = api(admin).get("/api/v1/models/", HTTP_ACCEPT="text/csv")
    assert response.status_code == 406
    assert response.json()["code"] == "not_acceptable"


def test_the_schema_says_which_answers_carry_a_location(db):
    paths = served_schema()["paths"]
    deploy = paths["/api/v1/endpoints/{name}/deploy/"]["post"]["responses"]["202"]
    assert deploy["headers"]["Location"]["required"] is True
    assert "headers" not in paths["/api/v1/endpoints/{name}/allowlist/"]["post"]["responses"]["201"]
