"""The playground: a real local serving process called through the portal (who may, what comes
back, 422s next to their fields), the snippets it shows run as written, the key in the curl right
after a reveal, and the version page's panel."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from html import unescape

import httpx
import pytest
from django.test import Client

from endpoints.demo import IRIS_EXAMPLES, IRIS_LABELS, NamedBytes
from endpoints.models import AuditEvent
from endpoints.services.deployments import deployment_request
from endpoints.services.endpoints import endpoint_create
from endpoints.services.keys import api_key_reveal, key_request_approve, key_request_create, key_request_issue
from endpoints.services.operations import deployment_run
from endpoints.services.versions import ml_model_create, model_version_register
from tests.fixtures.jwt_issuer import AUDIENCE, ISSUER, Issuer
from tests.fixtures.worker import session_ports, stop_serving_processes
from worker import tasks

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def module_runtime_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("playground-runtime")
    yield root
    stop_serving_processes(root, launcher=True)


@pytest.fixture
def runtime_dir(settings, module_runtime_dir):
    settings.LOCAL_RUNTIME_DIR = module_runtime_dir
    settings.LOCAL_RUNTIME_PORT_MIN, settings.LOCAL_RUNTIME_PORT_MAX = session_ports()
    yield module_runtime_dir
    stop_serving_processes(module_runtime_dir)
    shutil.rmtree(module_runtime_dir / "endpoints", ignore_errors=True)


@pytest.fixture
def version(admin, iris_bytes):
    ml_model = ml_model_create(user=admin, name="iris")
    return model_version_register(
        user=admin,
        ml_model=ml_model,
        upload=NamedBytes(iris_bytes, "iris.skops"),
        label_map=IRIS_LABELS,
        example=IRIS_EXAMPLES,
    )


def apply_access(endpoint) -> None:
    """Put the endpoint's access policy in force, as the worker's task does."""
    tasks.apply_access.run(endpoint.pk)


@pytest.fixture
def served(runtime_dir, admin, version, sent):
    """`iris-play`, checking keys, serving the version from a real local process."""
    endpoint = endpoint_create(user=admin, name="iris-play")
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=version)
    assert deployment_run(deployment_id=deployment.pk) == "ready"
    endpoint.refresh_from_db()
    apply_access(endpoint)
    return endpoint


@pytest.fixture
def team_key(served, admin, member, team, sent) -> str:
    """A key of the member's team for the endpoint, in force, revealed."""
    request = key_request_create(user=member, team=team, endpoint=served, reason="Scoring flowers in batches")
    key_request_approve(user=admin, request=request)
    key_request_issue(request_id=request.pk)
    apply_access(served)
    return api_key_reveal(user=member, request=request)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def row_form(endpoint, row: dict, **extra) -> dict:
    names = list(IRIS_EXAMPLES[0])
    return {
        "endpoint": endpoint.name,
        "shape": "row",
        **{f"feature-{index}": str(row[name]) for index, name in enumerate(names) if name in row},
        **extra,
    }


def answer_of(response) -> dict:
    """The JSON answer the panel shows."""
    html = response.content.decode()
    found = re.search(r'<pre class="pg-answer"[^>]*>(.*?)</pre>', html, re.S)
    assert found, html[-3000:]
    return json.loads(unescape(found.group(1)))


def direct(endpoint, body: dict, key: str, mode: str | None = None) -> httpx.Response:
    url = f"{endpoint.url}/predict" + (f"?return={mode}" if mode else "")
    return httpx.post(url, json=body, headers={"x-api-key": key}, timeout=10)


def test_an_admin_calls_the_live_endpoint_through_the_portal_without_a_key(served, admin):
    response = signed_in(admin).post("/playground/", row_form(served, IRIS_EXAMPLES[0]))

    assert response.status_code == 200
    assert answer_of(response)["target"] == "setosa"
    html = response.content.decode()
    assert "HTTP 200" in html
    assert re.search(r'<span class="pg-latency">[\d.]+ ms</span>', html)
    assert "via the serving process&#x27;s portal key" in html
    assert "<h1>Playground</h1>" in html  # a plain POST (no htmx) answers a page of its own
    event = AuditEvent.objects.get(action="endpoint.playground_call")
    assert event.actor == admin and event.details == {"status": 200, "return": "", "rows": 1}
    # Without a key, the same URL refuses the call: the portal's key is what let it through.
    assert httpx.post(f"{served.url}/predict", json=IRIS_EXAMPLES[0], timeout=10).status_code == 401


def test_a_member_of_a_team_holding_a_key_may_call_and_others_may_not(served, team_key, member, stranger):
    as_member = signed_in(member).post("/playground/", row_form(served, IRIS_EXAMPLES[1]))
    as_stranger = signed_in(stranger).post("/playground/", row_form(served, IRIS_EXAMPLES[1]))

    assert as_member.status_code == 200
    assert answer_of(as_member)["target"] == "versicolor"
    assert as_stranger.status_code == 403
    page = signed_in(stranger).get(f"/endpoints/{served.name}/").content.decode()
    assert "Only admins and members of a team holding a key for this endpoint" in page
    assert 'name="feature-0"' not in page


def test_a_wrong_value_comes_back_as_the_serving_processes_422_next_to_its_field(served, admin):
    form = row_form(served, {**IRIS_EXAMPLES[0], "sepal_length": "long"})
    del form["feature-3"]  # petal_width left empty: not nullable, so missing

    response = signed_in(admin).post("/playground/", {**form, "feature-3": ""})

    html = response.content.decode()
    assert "HTTP 422" in html
    assert answer_of(response)["fields"] == {"sepal_length": "expected a number", "petal_width": "missing"}
    assert re.search(r'id="pg-feature-0-error">expected a number<', html)
    assert re.search(r'id="pg-feature-3-error">missing<', html)
    assert 'aria-describedby="pg-feature-0-error"' in html
    assert 'value="long"' in html  # the input keeps what was typed


@pytest.mark.parametrize("mode", ["label", "probabilities", "both"])
def test_a_batch_with_each_return_choice_answers_as_a_direct_call(served, admin, team_key, mode):
    form = {"endpoint": served.name, "shape": "batch", "rows": json.dumps(IRIS_EXAMPLES), "return": mode}

    response = signed_in(admin).post("/playground/", form)

    assert answer_of(response) == direct(served, {"inputs": IRIS_EXAMPLES}, team_key, mode).json()
    if mode != "probabilities":
        assert answer_of(response)["predictions"] == ["setosa", "versicolor", "virginica"]


def test_a_batch_value_at_fault_is_named_by_its_row_under_the_rows(served, admin):
    rows = [IRIS_EXAMPLES[0], {**IRIS_EXAMPLES[1], "sepal_length": "long"}]

    response = signed_in(admin).post(
        "/playground/", {"endpoint": served.name, "shape": "batch", "rows": json.dumps(rows)}
    )

    html = response.content.decode()
    assert "HTTP 422" in html
    assert re.search(r'id="pg-rows-error"><div>inputs/1/sepal_length: expected a number</div>', html)
    assert 'aria-describedby="pg-rows-help pg-rows-error"' in html


def test_a_batch_that_is_not_json_is_refused_before_anything_is_sent(served, admin):
    response = signed_in(admin).post(
        "/playground/", {"endpoint": served.name, "shape": "batch", "rows": "[{oops"}
    )

    html = response.content.decode()
    assert 'id="pg-rows-error"' in html and "This is not valid JSON" in html
    assert "pg-answer" not in html
    assert not AuditEvent.objects.filter(action="endpoint.playground_call").exists()


def test_the_panel_starts_from_the_versions_examples(served, admin):
    html = signed_in(admin).get(f"/endpoints/{served.name}/").content.decode()

    assert 'id="pg-feature-0" name="feature-0" value="5.1"' in html
    assert 'id="pg-feature-3" name="feature-3" value="0.2"' in html
    assert "Example values: Given at upload (3 rows)." in html
    # The endpoint's own example carries them too, never 1.0 for every feature.
    assert '"sepal_length": 5.1' in unescape(html)


def snippet(html: str, name: str) -> str:
    found = re.search(rf'<pre id="pg-{name}"[^>]*>(.*?)</pre>', html, re.S)
    assert found, name
    return unescape(found.group(1))


def run(command: list[str], key: str, variable: str = "API_KEY") -> tuple[int, dict]:
    """Run a snippet with the credential in `variable`; the status and answer it prints (curl
    prints only the body)."""
    env = {"PATH": os.environ["PATH"], variable: key, "NO_PROXY": "*"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=True)
    return done.stdout


def test_the_snippets_send_the_forms_body_and_answer_as_the_playground(served, admin, team_key):
    form = {
        "endpoint": served.name,
        "shape": "batch",
        "rows": json.dumps(IRIS_EXAMPLES[:2]),
        "return": "both",
    }
    response = signed_in(admin).post("/playground/", form)
    html = response.content.decode()
    shown = answer_of(response)
    curl, python, javascript = (snippet(html, name) for name in ("curl", "python", "javascript"))

    # The body each sends is the form's.
    words = shlex.split(curl.replace("\\\n", " "))
    assert json.loads(words[words.index("-d") + 1]) == {"inputs": IRIS_EXAMPLES[:2]}
    assert f"{served.url}/predict?return=both" in words
    assert '"x-api-key: $API_KEY"' in curl
    assert 'os.environ["API_KEY"]' in python and "process.env.API_KEY" in javascript

    # And run as written, each gets the answer the playground showed.
    assert json.loads(run(["bash", "-c", curl + " -s"], team_key)) == shown
    printed = run([sys.executable, "-c", python], team_key)
    assert printed.startswith("200 ") and eval(printed[4:]) == shown  # noqa: S307 (our own output)
    if shutil.which("node"):
        printed = run(["node", "--input-type=module", "-e", javascript], team_key)
        assert printed.startswith("200 ") and json.loads(printed[4:]) == shown


def test_a_row_snippet_carries_nulls_and_types_as_python_and_javascript_read_them(served, admin):
    html = signed_in(admin).get(f"/endpoints/{served.name}/").content.decode()

    python = snippet(html, "python")
    assert 'body = {\n    "sepal_length": 5.1,' in python
    assert "requests.post(\n    'http://127.0.0.1:" in python
    compile(python, "snippet", "exec")


def test_right_after_a_reveal_the_curl_carries_the_key_and_only_then(served, admin, member, team, sent):
    request = key_request_create(user=member, team=team, endpoint=served, reason="Scoring flowers in batches")
    key_request_approve(user=admin, request=request)
    key_request_issue(request_id=request.pk)
    apply_access(served)
    client = signed_in(member)

    revealed = client.post(f"/key-requests/{request.pk}/reveal/").content.decode()
    later = client.get(f"/key-requests/{request.pk}/").content.decode()

    secret = re.search(r'id="api-key-secret" class="mono" value="([^"]+)"', revealed).group(1)
    curl = unescape(re.search(r'<pre id="reveal-curl"[^>]*>(.*?)</pre>', revealed, re.S).group(1))
    assert f"-H 'x-api-key: {secret}'" in curl
    assert json.loads(shlex.split(curl.replace("\\\n", " "))[-1]) == IRIS_EXAMPLES[0]
    assert json.loads(run(["bash", "-c", curl + " -s"], "unused"))["target"] == "setosa"
    assert secret not in later and "reveal-curl" not in later


def test_the_version_page_calls_where_the_version_is_live(served, admin, version):
    client = signed_in(admin)
    page = client.get(f"/models/iris/v{version.number}/").content.decode()
    assert f'name="version" value="{version.pk}"' in page
    assert 'name="endpoint" value="iris-play"' in page

    response = client.post(
        "/playground/", {**row_form(served, IRIS_EXAMPLES[2]), "version": version.pk}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith("<section")  # the panel alone, for htmx
    assert answer_of(response)["target"] == "virginica"

    # Once the endpoint stops serving it, the version page's form sends nothing there.
    endpoint_create(user=admin, name="iris-other")
    other = client.post(
        "/playground/",
        {**row_form(served, IRIS_EXAMPLES[2]), "endpoint": "iris-other", "version": version.pk},
    )
    assert "Nothing is live on this endpoint: deploy a version first." in other.content.decode()
    assert "pg-answer" not in other.content.decode()
    assert (
        client.post("/playground/", {**row_form(served, IRIS_EXAMPLES[2]), "version": "x"}).status_code == 404
    )


def test_a_version_live_nowhere_says_so_and_links_the_deploy_form(admin, version):
    client = signed_in(admin)
    nowhere = client.get(f"/models/iris/v{version.number}/").content.decode()
    endpoint_create(user=admin, name="iris-idle")
    page = client.get(f"/models/iris/v{version.number}/").content.decode()

    assert "iris v1 is not live on any endpoint" in nowhere
    assert "Its example row (Given at upload (3 rows)): <code" in nowhere
    assert '<a href="/new-endpoint/">Create an endpoint</a> to deploy it to' in nowhere
    assert '<a href="#deploy-to">Deploy this version</a>' in page
    assert 'id="deploy-to"' in page


def test_a_runtime_with_no_portal_path_asks_for_the_callers_key(memory_runtime, admin, version):
    endpoint = endpoint_create(user=admin, name="iris-cloud")
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=version)
    assert deployment_run(deployment_id=deployment.pk) == "ready"

    response = signed_in(admin).post("/playground/", row_form(endpoint, IRIS_EXAMPLES[0]))

    html = response.content.decode()
    assert 'id="pg-api-key"' in html
    assert "gives the portal no credential of its own" in html
    assert "Give your team&#x27;s key for this call" in html
    assert "pg-answer" not in html

    with_bad_key = signed_in(admin).post(
        "/playground/", {**row_form(endpoint, IRIS_EXAMPLES[0]), "api_key": "a\nb"}
    )
    assert "A key is one word of printable characters." in with_bad_key.content.decode()


def test_an_endpoint_whose_empty_allowlist_refuses_everyone_still_answers_an_admins_playground(
    runtime_dir, admin, version, sent
):
    endpoint = endpoint_create(user=admin, name="iris-shut", access_mode="ip_allowlist")
    deployment = deployment_request(user=admin, endpoint=endpoint, model_version=version)
    assert deployment_run(deployment_id=deployment.pk) == "ready"
    endpoint.refresh_from_db()
    apply_access(endpoint)

    response = signed_in(admin).post("/playground/", row_form(endpoint, IRIS_EXAMPLES[0]))

    assert httpx.post(f"{endpoint.url}/predict", json=IRIS_EXAMPLES[0], timeout=10).status_code == 403
    assert answer_of(response)["target"] == "setosa"


def test_an_identity_endpoints_playground_answers_and_its_snippets_send_a_bearer_token(
    runtime_dir, admin, version, sent
):
    with Issuer() as issuer:
        endpoint = endpoint_create(
            user=admin,
            name="iris-id",
            access_mode="identity",
            identity_issuer=ISSUER,
            identity_audience=AUDIENCE,
            identity_jwks_url=issuer.jwks_url,
        )
        deployment = deployment_request(user=admin, endpoint=endpoint, model_version=version)
        assert deployment_run(deployment_id=deployment.pk) == "ready"
        endpoint.refresh_from_db()
        apply_access(endpoint)

        response = signed_in(admin).post("/playground/", row_form(endpoint, IRIS_EXAMPLES[0]))
        shown = answer_of(response)
        assert shown["target"] == "setosa"  # through the portal's own key
        html = response.content.decode()
        curl, python, javascript = (snippet(html, name) for name in ("curl", "python", "javascript"))
        assert '"Authorization: Bearer $ID_TOKEN"' in curl and "x-api-key" not in curl
        assert 'os.environ["ID_TOKEN"]' in python and "process.env.ID_TOKEN" in javascript

        token = issuer.token()
        assert json.loads(run(["bash", "-c", curl + " -s"], token, "ID_TOKEN")) == shown
        printed = run([sys.executable, "-c", python], token, "ID_TOKEN")
        assert printed.startswith("200 ") and eval(printed[4:]) == shown  # noqa: S307 (our own output)
        refused = run(["bash", "-c", curl + " -s"], "not-a-token", "ID_TOKEN")
        assert json.loads(refused)["reason"] == "malformed"
