"""The identity access mode's settings, through the dashboard and the API: what is taken, what is
refused (every problem at once in the form), what each runtime needs, and that a change is pushed
like every other access change."""

import pytest
from rest_framework.test import APIClient

from endpoints.models import AccessMode, AccessPolicyState, AuditEvent, Endpoint
from endpoints.services.access import access_policy_for
from endpoints.services.endpoints import endpoint_create, endpoint_update
from endpoints.services.identity import identity_fill_defaults, identity_problems
from worker.runtimes.gcp.runtime import GcpRuntime
from worker.runtimes.local import LocalRuntime

ISSUER = "https://issuer.example.com"
JWKS = "https://issuer.example.com/.well-known/jwks.json"
AUDIENCE = "https://iris.example.com"
FORM = {
    "region": "us-central1",
    "cpu": "1",
    "memory": "512Mi",
    "min_instances": 0,
    "max_instances": 3,
    "concurrency": 80,
    "timeout_seconds": 60,
}


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def problems_of(runtime, **fields) -> dict[str, str]:
    endpoint = Endpoint(name="iris", access_mode=AccessMode.IDENTITY, **fields)
    identity_fill_defaults(endpoint, runtime)
    return {problem.field: problem.message for problem in identity_problems(endpoint, runtime)}


def test_an_admin_switches_an_endpoint_to_identity_in_the_dashboard(
    client, admin, endpoint, sent, django_capture_on_commit_callbacks
):
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/endpoints/{endpoint.name}/settings/",
            {
                **FORM,
                "access_mode": "identity",
                "identity_issuer": ISSUER,
                "identity_audience": AUDIENCE,
                "identity_jwks_url": JWKS,
                "identity_claim": "groups=ml-callers",
            },
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    endpoint.refresh_from_db()
    assert (endpoint.access_mode, endpoint.identity_issuer, endpoint.identity_claim) == (
        "identity",
        ISSUER,
        "groups=ml-callers",
    )
    assert endpoint.access_state == AccessPolicyState.PENDING
    assert ("worker.apply_access", [endpoint.pk]) in sent
    event = AuditEvent.objects.get(action="endpoint.update")
    assert event.details["identity_audience"] == AUDIENCE
    assert event.details["access_revision"] == endpoint.access_revision
    policy = access_policy_for(endpoint)
    assert policy.as_json()["identity"] == {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_url": JWKS,
        "claim": {"name": "groups", "value": "ml-callers"},
    }
    page = client.get(f"/endpoints/{endpoint.name}/").content.decode()
    assert "Authorization: Bearer" in page and ISSUER in page


def test_the_form_shows_every_identity_problem_at_once_and_saves_nothing(client, admin, endpoint, sent):
    client.force_login(admin)
    response = client.post(
        f"/endpoints/{endpoint.name}/settings/",
        {
            **FORM,
            "access_mode": "identity",
            "identity_jwks_url": "ftp://issuer.example.com/keys",
            "identity_claim": "no-equals-sign",
            "identity_invokers": "allUsers\nbob",
        },
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {
        "identity_issuer",
        "identity_audience",
        "identity_jwks_url",
        "identity_claim",
        "identity_invokers",
    }
    assert "needs the token issuer" in errors["identity_issuer"][0]
    assert "https://" in errors["identity_jwks_url"][0]
    assert "name=value" in errors["identity_claim"][0]
    assert "open access mode" in errors["identity_invokers"][0] and "'bob'" in errors["identity_invokers"][0]
    endpoint.refresh_from_db()
    assert endpoint.access_mode == AccessMode.API_KEY
    assert not sent


def test_the_api_takes_identity_settings_and_answers_them(admin, endpoint, sent):
    response = api(admin).patch(
        f"/api/v1/endpoints/{endpoint.name}/",
        {
            "access_mode": "identity",
            "identity_issuer": ISSUER,
            "identity_audience": AUDIENCE,
            "identity_jwks_url": "http://127.0.0.1:8999/certs",
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["access_mode"], body["identity_jwks_url"], body["identity_invokers"]) == (
        "identity",
        "http://127.0.0.1:8999/certs",
        [],
    )
    assert body["access_policy"]["state"] == "pending"


@pytest.mark.parametrize(
    ("fields", "status", "field", "words"),
    [
        ({"identity_invokers": ["user:ada@example.com", "everyone"]}, 400, "identity_invokers", "'everyone'"),
        ({"identity_invokers": ["allAuthenticatedUsers"]}, 400, "identity_invokers", "open access mode"),
        ({"identity_claim": "=x"}, 400, "identity_claim", "name=value"),
        ({"access_mode": "identity", "identity_issuer": ISSUER}, 422, "identity_audience", "audience"),
        (
            {"access_mode": "identity", "identity_invokers": ["user:ada@example.com"]},
            422,
            "identity_issuer",
            "issuer",
        ),
    ],
)
def test_the_api_refuses_identity_settings_naming_the_field(admin, endpoint, fields, status, field, words):
    response = api(admin).patch(f"/api/v1/endpoints/{endpoint.name}/", fields, format="json")
    assert response.status_code == status, response.json()
    body = response.json()
    # The first problem is `detail`; with several, `errors` names each field's.
    messages = body.get("errors") or {body["field"]: [body["detail"]]}
    assert any(words in message for message in messages[field]), body
    endpoint.refresh_from_db()
    assert endpoint.access_mode == AccessMode.API_KEY


def test_a_runtime_whose_serving_process_checks_tokens_keeps_no_invoker_list():
    found = problems_of(
        LocalRuntime,
        identity_issuer=ISSUER,
        identity_audience=AUDIENCE,
        identity_jwks_url=JWKS,
        identity_invokers=["user:ada@example.com"],
    )
    assert list(found) == ["identity_invokers"]
    assert "require a claim instead" in found["identity_invokers"]


def test_on_google_cloud_the_issuer_and_keys_are_googles_and_the_audience_is_the_service_url():
    endpoint = Endpoint(
        name="iris", access_mode=AccessMode.IDENTITY, identity_invokers=["group:ml@example.com"]
    )
    identity_fill_defaults(endpoint, GcpRuntime)
    assert endpoint.identity_issuer == "https://accounts.google.com"
    assert endpoint.identity_jwks_url == "https://www.googleapis.com/oauth2/v3/certs"
    assert endpoint.identity_audience == ""
    assert identity_problems(endpoint, GcpRuntime) == []


def test_on_google_cloud_another_issuer_a_claim_or_no_invokers_are_refused():
    found = problems_of(GcpRuntime, identity_issuer=ISSUER, identity_claim="groups=ml")
    assert set(found) == {"identity_issuer", "identity_claim", "identity_invokers"}
    assert "https://accounts.google.com" in found["identity_issuer"]
    assert "cannot require a claim" in found["identity_claim"]
    assert "refuses every caller" in found["identity_invokers"]


def test_identity_settings_are_kept_but_not_checked_in_another_mode(admin):
    endpoint = endpoint_create(user=admin, name="iris-keys", identity_issuer="not a url")
    assert endpoint.access_mode == AccessMode.API_KEY
    assert access_policy_for(endpoint).identity is None


def test_the_api_names_every_identity_problem_at_once(admin, endpoint):
    response = api(admin).patch(
        f"/api/v1/endpoints/{endpoint.name}/",
        {"access_mode": "identity", "identity_jwks_url": "ftp://x", "identity_invokers": ["bob"]},
        format="json",
    )
    assert response.status_code in (400, 422)
    errors = response.json()["errors"]
    assert set(errors) == {"identity_issuer", "identity_audience", "identity_jwks_url", "identity_invokers"}
    assert "'bob'" in errors["identity_invokers"][0]


def test_changing_an_identity_endpoints_audience_says_it_is_being_applied(client, admin, endpoint, sent):
    endpoint_update(
        user=admin,
        endpoint=endpoint,
        access_mode="identity",
        identity_issuer=ISSUER,
        identity_audience=AUDIENCE,
        identity_jwks_url=JWKS,
    )
    client.force_login(admin)
    fields = {**FORM, "access_mode": "identity", "identity_issuer": ISSUER, "identity_jwks_url": JWKS}
    response = client.post(
        f"/endpoints/{endpoint.name}/settings/", {**fields, "identity_audience": "https://other.example.com"}
    )
    assert response.status_code == 302
    page = client.get(response.url).content.decode()
    assert "The identity settings are being applied now." in page
    endpoint.refresh_from_db()
    assert endpoint.identity_audience == "https://other.example.com"
    assert endpoint.access_state == AccessPolicyState.PENDING
