"""OpenAPI 3 -> Swagger 2.0 for API Gateway: what is converted, what is added, what is left out."""

from tests.fakes.api_gateway import document_problems
from worker.runtimes.base import ModelSpec
from worker.runtimes.gcp.swagger import schema_2, serving_openapi, to_swagger2

BACKEND = "https://iris-prod-abc-uc.a.run.app"

# An OpenAPI 3.0 document as FastAPI/pydantic would write it: components, requestBody, nullable,
# anyOf with null, a cookie parameter, and routes end users never call (those without `security`).
FASTAPI_STYLE = {
    "openapi": "3.0.2",
    "info": {"title": "model", "version": "0.1.0"},
    "servers": [{"url": "https://example.com:8443/base"}],
    "paths": {
        "/predict": {
            "post": {
                "operationId": "predict_predict_post",
                "security": [{"APIKeyHeader": []}],
                "parameters": [
                    {
                        "name": "return",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["label", "both"]},
                    },
                    {"name": "session", "in": "cookie", "schema": {"type": "string"}},
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Row"}}},
                },
                "responses": {
                    "200": {
                        "description": "Successful Response",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}
                        },
                    },
                    "422": {"description": "Validation Error"},
                },
            }
        },
        "/v1/model": {
            "get": {"security": [{"APIKeyHeader": []}], "responses": {"200": {"description": "OK"}}}
        },
        "/metrics": {"get": {"operationId": "metrics", "responses": {"200": {"description": "OK"}}}},
        "/docs": {"get": {"operationId": "docs", "responses": {"200": {"description": "OK"}}}},
    },
    "components": {
        "schemas": {
            "Row": {
                "type": "object",
                "properties": {
                    "sepal_length": {"type": "number", "exclusiveMinimum": 0},
                    "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Note"},
                    "weight": {"type": "number", "nullable": True},
                    "kind": {"const": "iris"},
                },
                "required": ["sepal_length"],
            },
            "Prediction": {"type": "object", "properties": {"target": {"type": ["string", "null"]}}},
        }
    },
}


def convert(doc=FASTAPI_STYLE, **kwargs):
    return to_swagger2(doc, backend=BACKEND, deadline=kwargs.pop("deadline", 60), title="iris-prod", **kwargs)


def exposed(doc) -> set:
    return {(path, method) for path, item in doc["paths"].items() for method in item}


def test_only_the_routes_that_need_a_key_are_exposed_unless_routes_are_named():
    assert exposed(convert()) == {("/predict", "post"), ("/v1/model", "get")}
    assert exposed(convert(routes=frozenset({("/metrics", "get")}))) == {("/metrics", "get")}


def test_the_backend_is_the_cloud_run_url_with_explicit_path_translation_and_the_endpoints_timeout():
    assert convert(deadline=3600)["x-google-backend"] == {
        "address": BACKEND,
        "path_translation": "APPEND_PATH_TO_ADDRESS",
        "deadline": 3600.0,
    }


def test_keys_are_read_from_the_header_only_and_required_everywhere():
    doc = convert()

    assert doc["securityDefinitions"] == {"api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}}
    assert doc["security"] == [{"api_key": []}]
    assert all("security" not in op for item in doc["paths"].values() for op in item.values())


def test_openapi_3_parts_become_swagger_2_parts():
    doc = convert()

    assert "servers" not in doc and "components" not in doc and "host" not in doc
    predict = doc["paths"]["/predict"]["post"]
    assert predict["operationId"] == "predict_predict_post"
    assert predict["parameters"] == [
        {"name": "return", "in": "query", "required": False, "type": "string", "enum": ["label", "both"]},
        {
            "in": "body",
            "name": "body",
            "required": True,
            "description": "",
            "schema": {"$ref": "#/definitions/Row"},
        },
    ]
    assert predict["responses"]["200"]["schema"] == {"$ref": "#/definitions/Prediction"}
    assert predict["responses"]["422"] == {"description": "Validation Error"}
    assert doc["paths"]["/v1/model"]["get"]["operationId"] == "get__v1_model"
    row = doc["definitions"]["Row"]["properties"]
    assert row["sepal_length"] == {"type": "number", "minimum": 0, "exclusiveMinimum": True}
    assert row["note"] == {"type": "string", "x-nullable": True, "title": "Note"}
    assert row["weight"] == {"type": "number", "x-nullable": True}
    assert row["kind"] == {"enum": ["iris"]}
    assert doc["definitions"]["Prediction"]["properties"]["target"] == {"type": "string", "x-nullable": True}
    assert document_problems(doc) == []


def test_several_alternatives_leave_an_open_schema_with_its_description():
    assert schema_2({"oneOf": [{"type": "object"}, {"type": "array"}], "description": "row or rows"}) == {
        "description": "row or rows"
    }


def test_the_serving_containers_own_document_converts_cleanly_to_its_end_user_routes():
    model = ModelSpec(
        name="iris",
        version=3,
        artifact_path="/dev/null",
        sha256="0" * 64,
        format="skops",
        input_schema=({"name": "sepal_length", "type": "number"}, {"name": "petals", "type": "integer"}),
        classes=(0, 1, 2),
        label_map={"0": "setosa"},
    )
    source = serving_openapi(model)
    doc = convert(source)

    assert {"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/models/iris/ready"} <= set(
        source["paths"]
    )
    assert exposed(doc) == {
        ("/predict", "post"),
        ("/v1/model", "get"),
        ("/v2/models/iris", "get"),
        ("/v2/models/iris/infer", "post"),
        ("/v2/models/iris/versions/3", "get"),
        ("/v2/models/iris/versions/3/infer", "post"),
    }
    assert doc["definitions"]["NamedFeatures"]["properties"]["sepal_length"] == {"type": "number"}
    assert doc["definitions"]["NamedFeatures"]["properties"]["petals"] == {"type": "integer"}
    (query,) = [p for p in doc["paths"]["/predict"]["post"]["parameters"] if p["in"] == "query"]
    assert query["name"] == "return" and query["type"] == "string"
    parameters = [
        p for item in doc["paths"].values() for op in item.values() for p in op.get("parameters", [])
    ]
    assert not [p for p in parameters if p["in"] == "query" and p["name"] in ("key", "api_key")]
    assert document_problems(doc) == []
