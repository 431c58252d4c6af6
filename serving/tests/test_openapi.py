"""GET /openapi.json: a valid OpenAPI 3 document that describes what the server really takes and answers.

The document each running server publishes is checked with openapi-spec-validator (the OpenAPI 3.0
specification's own schema and rules), for a classifier with and without an access file, a classifier
with integer and boolean features, and a regressor. Then it is held against the server: every feature
is named and typed in the request schemas of /predict, the bodies the server takes (and the answers it
gives) match those schemas and the ones it refuses do not, every described route answers, and the
Open Inference Protocol routes are described with and without /versions/<version>.
"""

from __future__ import annotations

import copy
import hashlib

import httpx
import numpy as np
import orjson
import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import OpenAPIV30SpecValidator
from sklearn.linear_model import LinearRegression, LogisticRegression

from serving.tests.support import SETOSA, Server, stop_all, write_model

KEY = "k3y-openapi-0-aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
# And the inference routes but /ready. "/" and /metrics are checked but private (`x-private`).
CHECKED = {("/predict", "post"), ("/v1/model", "get"), ("/", "get"), ("/metrics", "get")}
# Values a feature of each type must take, and values it must not, by the document's schemas.
ACCEPTS = {"number": [1.5, -2, 0.0], "integer": [3, -2, 0], "boolean": [True, False, 0, 1]}
REFUSES = {"number": [True, "1.5", None], "integer": [1.5, True, "3"], "boolean": [2, 0.5, "true", None]}
RISK = [("age", "integer"), ("smoker", "boolean"), ("bmi", "number")]
HOUSE = [("rooms", "integer"), ("area", "number"), ("distance", "number")]


def typed_model(directory, name, estimator, features, label_map=None) -> dict:
    schema = [{"name": feature, "type": kind} for feature, kind in features]
    return write_model(
        directory, name, estimator, [feature for feature, _ in features], label_map, schema=schema
    )


@pytest.fixture(scope="module")
def servers(iris_env, model_dir, tmp_path_factory) -> dict:
    """name -> (server, features [(name, type)], one row the model takes, keys checked)."""
    directory = tmp_path_factory.mktemp("openapi")
    rng = np.random.default_rng(7)
    # A classifier with integer, boolean and number features.
    risk_x = np.column_stack([rng.integers(18, 90, 400), rng.integers(0, 2, 400), rng.normal(26, 4, 400)])
    risk_y = ((risk_x[:, 0] > 55) | (risk_x[:, 1] == 1)).astype(int)
    risk = LogisticRegression(max_iter=1000).fit(risk_x, risk_y)
    risk_env = typed_model(model_dir, "risk", risk, RISK, {"0": "low", "1": "high"})
    # A regressor with an integer feature.
    house_x = np.column_stack([rng.integers(1, 8, 300), rng.normal(90, 30, 300), rng.exponential(5, 300)])
    house = LinearRegression().fit(house_x, house_x @ np.array([20.0, 1.5, -3.0]) + 50)
    house_env = typed_model(model_dir, "house", house, HOUSE)
    # The iris classifier behind an access file that asks for keys.
    policy = directory / "access.json"
    record = {"prefix": KEY[:12], "hash": hashlib.sha256(KEY.encode()).hexdigest(), "expires_at": None}
    policy.write_bytes(orjson.dumps({"mode": "api_key", "keys": [record], "cidrs": []}))
    iris = [(feature, "number") for feature in SETOSA]
    cases = {
        "iris": (iris_env, iris, SETOSA, False),
        "iris_with_keys": ({**iris_env, "SERVING_ACCESS_FILE": str(policy)}, iris, SETOSA, True),
        "risk": (risk_env, RISK, {"age": 61, "smoker": True, "bmi": 24.5}, False),
        "house": (house_env, HOUSE, {"rooms": 3, "area": 85.5, "distance": 2.25}, False),
    }
    started = {name: Server(env, directory / f"{name}.log") for name, (env, *_) in cases.items()}
    try:
        for server in started.values():
            server.wait_ready(timeout=60)
        yield {name: (started[name], *rest) for name, (_, *rest) in cases.items()}
    finally:
        stop_all(started.values())


CASES = ["iris", "iris_with_keys", "risk", "house"]


@pytest.fixture(params=CASES)
def case(request, servers):
    server, features, row, keys = servers[request.param]
    headers = {"x-api-key": KEY} if keys else {}
    client = httpx.Client(base_url=server.url, timeout=10, headers=headers)
    document = client.get("/openapi.json").json()
    yield document, client, features, row, keys
    client.close()


def spec_errors(document: dict) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in OpenAPIV30SpecValidator(document).iter_errors()
    ]


def resolve(document: dict, schema: dict) -> dict:
    """Follow local `$ref`s (#/components/...) to the schema itself."""
    while "$ref" in schema:
        target = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def schema_problems(document: dict, schema: dict, instance) -> list[str]:
    """What the document's schema (OpenAPI 3.0 dialect, refs into its components) says of `instance`."""
    validator = OAS30Validator({**schema, "components": document["components"]})
    return [error.message for error in validator.iter_errors(instance)]


def request_schema(document: dict, path: str = "/predict") -> dict:
    return document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]


def answer_schema(document: dict, status: str = "200", path: str = "/predict") -> dict:
    return document["paths"][path]["post"]["responses"][status]["content"]["application/json"]["schema"]


def inference_paths(client: httpx.Client) -> dict[str, str]:
    """The Open Inference Protocol paths of the model this server serves."""
    model = client.get("/v1/model").json()
    name, version = model["name"], model["version"]
    base, versioned = f"/v2/models/{name}", f"/v2/models/{name}/versions/{version}"
    return {
        "metadata": base,
        "ready": f"{base}/ready",
        "infer": f"{base}/infer",
        "versioned metadata": versioned,
        "versioned ready": f"{versioned}/ready",
        "versioned infer": f"{versioned}/infer",
    }


def test_the_document_is_valid_openapi_3(case):
    document, _, features, _, _ = case
    assert document["openapi"].startswith("3.0.")
    assert spec_errors(document) == []
    # The validator does find errors: an operation without responses, a type OpenAPI does not have.
    broken = copy.deepcopy(document)
    del broken["paths"]["/predict"]["post"]["responses"]
    broken["components"]["schemas"]["NamedFeatures"]["properties"][features[0][0]] = {"type": "float"}
    assert len(spec_errors(broken)) >= 2, spec_errors(broken)


def test_every_feature_is_named_and_typed_in_the_predict_request_schemas(case):
    document, _, features, _, _ = case
    forms = [resolve(document, form) for form in request_schema(document)["oneOf"]]
    named, inputs, instances = (
        next(form for form in forms if key in form["required"])
        for key in (features[0][0], "inputs", "instances")
    )
    row_forms = [
        resolve(document, alternative)
        for batch, key in ((inputs, "inputs"), (instances, "instances"))
        for alternative in batch["properties"][key]["items"]["oneOf"]
    ]
    row_objects = [form for form in row_forms if form["type"] == "object"]
    row_lists = [form for form in row_forms if form["type"] == "array"]
    assert len(row_objects) == len(row_lists) == 2
    names = [feature for feature, _ in features]
    for schema in (named, *row_objects):
        assert schema["required"] == names
        assert schema["additionalProperties"] is False
        assert set(schema["properties"]) - {"return"} == set(names)
        for feature, kind in features:
            typed = schema["properties"][feature]
            for value in ACCEPTS[kind]:
                assert schema_problems(document, typed, value) == [], (feature, kind, value)
            for value in REFUSES[kind]:
                assert schema_problems(document, typed, value), (feature, kind, value)
    assert "return" in named["properties"]
    assert all("return" not in schema["properties"] for schema in row_objects)
    for schema in row_lists:  # values in order, each type said, each value of each type taken
        assert schema["minItems"] == schema["maxItems"] == len(features)
        assert (
            schema["description"]
            == "Values in this order: " + ", ".join(f"{feature} ({kind})" for feature, kind in features) + "."
        )
        for _, kind in features:
            for value in ACCEPTS[kind]:
                assert schema_problems(document, schema["items"], value) == [], (kind, value)
        assert schema_problems(document, schema["items"], "1.5")


def test_bodies_the_server_takes_match_the_schemas_and_so_do_its_answers(case):
    document, client, features, row, _ = case
    values = list(row.values())
    bodies = [
        ({**row}, {}),
        ({**row, "return": "label"}, {}),
        ({"inputs": [values, values]}, {}),
        ({"inputs": [row]}, {}),
        ({"instances": [values, row]}, {}),
        ({"instances": [row]}, {"return": "label"}),
    ]
    if client.get("/v1/model").json()["classes"]:
        bodies += [
            ({**row, "return": "probabilities"}, {}),
            ({"inputs": [values], "return": "both"}, {}),
            ({"instances": [row, values]}, {"return": "probabilities"}),
        ]
    else:  # a regressor has no probabilities to give, and the document says so
        assert schema_problems(document, request_schema(document), {**row, "return": "both"})
        assert client.post("/predict", json={**row, "return": "both"}).status_code == 422
    for feature, kind in features:
        if kind == "boolean":  # 0/1 for a boolean, in a named row and in a list
            bodies.append(({**row, feature: 0, "return": "label"}, {}))
            bodies.append(({"inputs": [[0 if name == feature else row[name] for name in row]]}, {}))
    for body, params in bodies:
        assert schema_problems(document, request_schema(document), body) == [], body
        answer = client.post("/predict", json=body, params=params)
        assert answer.status_code == 200, (body, answer.text)
        assert schema_problems(document, answer_schema(document), answer.json()) == [], (body, answer.json())
    number = next(feature for feature, kind in features if kind == "number")
    refused = [
        {name: value for name, value in row.items() if name != number},  # a feature missing
        {**row, "colour": 1.0},  # an unknown field
        {**row, number: True},  # a boolean for a number
        {"inputs": [values[:-1]]},  # a short row
        {"instances": [{**row, "return": "label"}]},  # return inside a row
    ]
    for body in refused:
        assert schema_problems(document, request_schema(document), body), body
        answer = client.post("/predict", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert schema_problems(document, answer_schema(document, "422"), answer.json()) == []


def test_the_inference_protocol_routes_are_described_with_and_without_the_version(case):
    document, client, features, row, _ = case
    paths = inference_paths(client)
    for which in ("infer", "versioned infer"):
        operation = document["paths"][paths[which]]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/InferenceRequest"}, which
        assert {"200", "400", "413", "415", "422"} <= set(operation["responses"]), which
        tensor = {"name": "x", "shape": [1, len(features)], "datatype": "FP64", "data": list(row.values())}
        request = {"inputs": [tensor]}
        assert schema_problems(document, body, request) == []
        answer = client.post(paths[which], json=request)
        assert answer.status_code == 200, (which, answer.text)
        assert answer.json()["outputs"][0]["name"] in ("label", "predict")
    for which in ("metadata", "versioned metadata", "ready", "versioned ready"):
        assert "200" in document["paths"][paths[which]]["get"]["responses"], which
        assert client.get(paths[which]).status_code == 200, which


def test_every_described_route_answers(case):
    document, client, _, _, _ = case
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "get":
                assert client.get(path).status_code == 200, path
            else:
                content = operation["requestBody"]["content"]["application/json"]
                for example in content.get("examples", {}).values():
                    assert schema_problems(document, content["schema"], example["value"]) == []
                    assert client.post(path, json=example["value"]).status_code == 200, (path, example)
                assert client.post(path, json={"nothing": True}).status_code == 422, path


def test_the_key_header_is_a_security_scheme_on_the_checked_routes_only_when_keys_are_checked(case):
    document, client, _, _, keys = case
    paths = inference_paths(client)
    checked = CHECKED | {
        (paths[which], method)
        for which, method in (
            ("metadata", "get"),
            ("infer", "post"),
            ("versioned metadata", "get"),
            ("versioned infer", "post"),
        )
    }
    operations = {
        (path, method): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert checked <= set(operations)
    if keys:
        assert document["components"]["securitySchemes"] == {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}
        }
    else:
        assert "securitySchemes" not in document["components"]
    for (path, method), operation in operations.items():
        secured = keys and (path, method) in checked
        assert operation.get("security") == ([{"ApiKey": []}] if secured else None), (path, method)
        assert ("401" in operation["responses"]) == secured, (path, method)
        # ... and the server agrees: a checked route without a key is a 401, an open one is not.
        bare = httpx.request(method, f"{client.base_url}{path}", json={} if method == "post" else None)
        assert (bare.status_code == 401) == secured, (path, method, bare.status_code)
