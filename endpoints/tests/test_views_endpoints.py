"""The endpoint pages: the list (fast at any size), create, settings, and the detail page."""

import pytest
from django.db.models import F
from django.urls import reverse

from endpoints.models import AuditEvent, Deployment, DeploymentStatus, Endpoint
from endpoints.services.allowlist import allowlist_add
from endpoints.services.endpoints import endpoint_create

LIST = reverse("endpoints:endpoint-list")
CREATE = reverse("endpoints:endpoint-create")
VALID = {
    "name": "churn",
    "description": "Who is about to leave",
    "region": "europe-west1",
    "cpu": "2",
    "memory": "1Gi",
    "min_instances": "1",
    "max_instances": "5",
    "concurrency": "40",
    "timeout_seconds": "30",
    "access_mode": "both",
}


def _endpoints_with_history(admin, version, count: int, deployments_each: int) -> None:
    """`count` endpoints, each with a history of deployments, the newest one live."""
    endpoints = Endpoint.objects.bulk_create(
        Endpoint(name=f"ep-{index:04d}", created_by=admin, url=f"http://127.0.0.1:1/e/ep-{index:04d}")
        for index in range(count)
    )
    Deployment.objects.bulk_create(
        Deployment(
            endpoint=endpoint,
            model_version=version,
            requested_by=admin,
            status=DeploymentStatus.READY if n == deployments_each - 1 else DeploymentStatus.SUPERSEDED,
        )
        for endpoint in endpoints
        for n in range(deployments_each)
    )
    for endpoint in endpoints:
        Endpoint.objects.filter(pk=endpoint.pk).update(live_deployment=endpoint.deployments.first())


def test_an_anonymous_visitor_is_sent_to_the_login_page(client):
    response = client.get(LIST)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_login_page_logs_a_person_in_and_logout_is_a_post(client, member):
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("login"), {"username": "tom", "password": "tom-password-1"})
    assert response.status_code == 302
    assert client.get(LIST).status_code == 200
    assert client.get(reverse("logout"))["Location"] == LIST  # still signed in
    assert client.get(LIST).status_code == 200
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(LIST).status_code == 302


def test_a_wrong_password_is_refused_on_the_login_page(client, member):
    response = client.post(reverse("login"), {"username": "tom", "password": "nope"})
    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()


def test_the_list_shows_each_endpoints_live_version_latest_status_url_and_access(
    client, member, admin, iris_version
):
    _endpoints_with_history(admin, iris_version, count=2, deployments_each=2)
    Deployment.objects.create(
        endpoint=Endpoint.objects.get(name="ep-0001"), model_version=iris_version, requested_by=admin
    )
    client.force_login(member)
    page = client.get(LIST).content.decode()
    assert "ep-0000" in page and "ep-0001" in page
    assert "iris v1" in page
    assert "http://127.0.0.1:1/e/ep-0000" in page
    assert "badge-ready" in page and "badge-queued" in page
    assert "API key" in page


def test_an_endpoint_never_deployed_says_so_in_the_list(client, member, endpoint):
    client.force_login(member)
    page = client.get(LIST).content.decode()
    assert 'class="badge health-not_deployed">Not deployed<' in page
    assert "none yet" in page


def test_the_list_filters_by_name(client, member, admin, iris_version):
    _endpoints_with_history(admin, iris_version, count=3, deployments_each=1)
    client.force_login(member)
    page = client.get(LIST, {"q": "0002"}).content.decode()
    assert "ep-0002" in page and "ep-0001" not in page


@pytest.mark.parametrize("count", [3, 120])
def test_the_list_takes_the_same_few_queries_however_many_endpoints_there_are(
    client, admin, iris_version, django_assert_max_num_queries, count
):
    _endpoints_with_history(admin, iris_version, count=count, deployments_each=10)
    client.force_login(admin)
    # session, user, the nav's pending-request count, the paginator's count, the page itself, and
    # the recently deleted endpoints
    with django_assert_max_num_queries(6):
        response = client.get(LIST)
    assert response.status_code == 200
    assert len(response.context["page"].object_list) == min(count, 50)
    with django_assert_max_num_queries(6):
        assert client.get(LIST, {"page": 2}).status_code == 200


def test_an_admin_creates_an_endpoint_with_its_settings(client, admin):
    client.force_login(admin)
    response = client.post(CREATE, VALID)
    assert response.status_code == 302
    assert response["Location"] == reverse("endpoints:endpoint-detail", args=["churn"])
    endpoint = Endpoint.objects.get(name="churn")
    assert (endpoint.region, endpoint.cpu, endpoint.memory) == ("europe-west1", "2", "1Gi")
    assert (endpoint.min_instances, endpoint.max_instances, endpoint.concurrency) == (1, 5, 40)
    assert endpoint.access_mode == "both" and endpoint.timeout_seconds == 30
    assert AuditEvent.objects.filter(action="endpoint.create").count() == 1


def test_a_name_that_is_not_dns_safe_is_refused_on_the_name_field(client, admin):
    client.force_login(admin)
    response = client.post(CREATE, {**VALID, "name": "Churn_Model"})
    assert response.status_code == 400
    assert "lowercase letters" in " ".join(response.context["form"].errors["name"])
    assert not Endpoint.objects.exists()


def test_more_memory_than_the_cpu_allows_is_refused_on_the_memory_field(client, admin):
    client.force_login(admin)
    response = client.post(CREATE, {**VALID, "cpu": "1", "memory": "8Gi"})
    assert response.status_code == 400
    assert response.context["form"].errors["memory"] == [
        "With 1 vCPU, Cloud Run takes 128 MiB to 4 GiB of memory: change the memory or the CPU."
    ]
    assert not Endpoint.objects.exists()


def test_more_minimum_than_maximum_instances_is_refused_on_the_field(client, admin):
    client.force_login(admin)
    response = client.post(CREATE, {**VALID, "min_instances": "9", "max_instances": "2"})
    assert response.status_code == 400
    assert response.context["form"].errors["min_instances"] == [
        "Minimum instances cannot exceed maximum instances."
    ]
    assert not Endpoint.objects.exists()


def test_a_taken_name_is_refused_on_the_name_field(client, admin, endpoint):
    client.force_login(admin)
    response = client.post(CREATE, {**VALID, "name": endpoint.name})
    assert "already exists" in response.context["form"].errors["name"][0]
    assert Endpoint.objects.count() == 1


def test_a_team_member_cannot_create_an_endpoint(client, member):
    client.force_login(member)
    assert client.get(CREATE).status_code == 403
    assert client.post(CREATE, VALID).status_code == 403
    assert not Endpoint.objects.exists()


def test_an_admin_changes_an_endpoints_settings(client, admin, endpoint):
    client.force_login(admin)
    url = reverse("endpoints:endpoint-edit", args=[endpoint.name])
    assert client.get(url).status_code == 200
    data = {key: value for key, value in VALID.items() if key != "name"}
    assert client.post(url, {**data, "concurrency": "7"}).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.concurrency == 7 and endpoint.access_mode == "both"


def test_a_bad_setting_is_shown_on_its_field_and_nothing_changes(client, admin, endpoint):
    client.force_login(admin)
    url = reverse("endpoints:endpoint-edit", args=[endpoint.name])
    data = {key: value for key, value in VALID.items() if key != "name"}
    response = client.post(url, {**data, "timeout_seconds": "99999"})
    assert response.status_code == 400
    assert "timeout_seconds" in response.context["form"].errors
    endpoint.refresh_from_db()
    assert endpoint.timeout_seconds == 60 and endpoint.region == "us-central1"


def test_the_detail_page_says_what_checks_calls_and_shows_a_curl_command(client, member, admin, iris_version):
    endpoint = endpoint_create(user=admin, name="iris-prod", access_mode="both")
    allowlist_add(user=admin, endpoint=endpoint, cidr="10.1.0.0/16", note="Office")
    deployment = Deployment.objects.create(
        endpoint=endpoint, model_version=iris_version, requested_by=admin, status=DeploymentStatus.READY
    )
    Endpoint.objects.filter(pk=endpoint.pk).update(
        live_deployment=deployment, url="http://127.0.0.1:18100", access_applied_revision=F("access_revision")
    )
    client.force_login(member)
    response = client.get(reverse("endpoints:endpoint-detail", args=["iris-prod"]))
    page = response.content.decode()
    assert "http://127.0.0.1:18100" in page
    assert "Calls need an <code>x-api-key</code> header" in page
    assert "Only listed addresses" in page
    assert "10.1.0.0/16" in page
    assert "curl -X POST http://127.0.0.1:18100/predict" in response.context["example"]["curl"]
    # The version's example row (from its schema here: it kept none), in the schema's order.
    assert '{"sepal_length": 0.0, "sepal_width": 0.0,' in response.context["example"]["curl"]
    # A team member sees no deploy form and no allowlist editing.
    assert response.context["deploy_form"] is None
    assert 'name="cidr"' not in page


def test_an_open_endpoint_says_it_has_no_checks(client, admin):
    endpoint_create(user=admin, name="open-one", access_mode="open")
    client.force_login(admin)
    page = client.get(reverse("endpoints:endpoint-detail", args=["open-one"])).content.decode()
    assert "Once deployed, no checks: anyone who can reach the URL can call it." in page
    assert "Not deployed yet" in page


def test_an_unknown_endpoint_is_a_404(client, member):
    client.force_login(member)
    assert client.get(reverse("endpoints:endpoint-detail", args=["nope"])).status_code == 404


@pytest.mark.parametrize(
    ("runtime", "checker"),
    [
        ("local", "checked by the serving process itself"),
        ("gcp", "checked by Cloud Armor on the HTTPS load balancer"),
    ],
)
def test_the_detail_page_says_who_checks_addresses_and_warns_of_an_empty_allowlist(
    client, admin, settings, runtime, checker
):
    if runtime == "gcp":  # the page needs the runtime built, not any Google call
        settings.GCP_PROJECT = "demo-project"
        settings.GCP_SERVING_IMAGE = "us-docker.pkg.dev/demo-project/serving/serving:1"
        settings.GCP_ARTIFACT_BUCKET = "demo-artifacts"
        settings.GCP_GATEWAY_SERVICE_ACCOUNT = "gateway@demo-project.iam.gserviceaccount.com"
        settings.GCP_LB_DOMAIN = "endpoints.example.com"
    settings.RUNTIME = runtime
    endpoint_create(user=admin, name="guarded", access_mode="ip_allowlist")
    client.force_login(admin)
    page = client.get(reverse("endpoints:endpoint-detail", args=["guarded"])).content.decode()
    assert checker in page
    # Nothing is deployed: the page says what will hold once something is.
    assert "Once deployed, only listed addresses may call it" in page
    assert "The allowlist is empty, so every caller will be refused until an address is added." in page
    allowlist_add(user=admin, endpoint=Endpoint.objects.get(name="guarded"), cidr="10.0.0.0/8")
    page = client.get(reverse("endpoints:endpoint-detail", args=["guarded"])).content.decode()
    assert "The allowlist is empty" not in page


def access_line(client, name) -> str:
    page = client.get(reverse("endpoints:endpoint-detail", args=[name])).content.decode()
    start = page.index('id="access-state"')
    return page[start : page.index("</p>", start)]


def test_the_detail_page_says_whether_the_live_access_policy_is_the_one_asked_for(client, admin, endpoint):
    client.force_login(admin)
    assert "<strong>applied</strong>" in access_line(client, endpoint.name)

    allowlist_add(user=admin, endpoint=endpoint, cidr="10.0.0.0/8")
    line = access_line(client, endpoint.name)
    assert "<strong>pending</strong> since" in line
    assert 'hx-trigger="every 2s"' in line  # it looks again until the change is in force

    Endpoint.objects.filter(pk=endpoint.pk).update(access_error="Cloud Armor said no.")
    line = access_line(client, endpoint.name)
    assert "<strong>failed</strong>: Cloud Armor said no." in line and "hx-trigger" not in line

    Endpoint.objects.filter(pk=endpoint.pk).update(
        access_applied_revision=1, access_error="", access_note="Deploy the endpoint again to switch."
    )
    line = access_line(client, endpoint.name)
    assert "<strong>needs a deploy</strong>" in line and "Deploy the endpoint again to switch." in line


def test_the_access_state_line_is_served_alone_for_polling(client, member, admin, endpoint):
    allowlist_add(user=admin, endpoint=endpoint, cidr="10.0.0.0/8")
    client.force_login(member)
    response = client.get(reverse("endpoints:endpoint-access-state", args=[endpoint.name]))
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<p id="access-state"')
    assert "<strong>pending</strong>" in response.content.decode()


def test_changing_the_access_mode_in_settings_is_pushed_at_once_and_says_so(
    client, admin, endpoint, django_capture_on_commit_callbacks
):
    client.force_login(admin)
    url = reverse("endpoints:endpoint-edit", args=[endpoint.name])
    data = {key: value for key, value in VALID.items() if key != "name"}
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url, {**data, "access_mode": "ip_allowlist"}, follow=True)
    assert len(callbacks) == 1  # worker.apply_access, once this commits
    page = response.content.decode()
    assert "is being applied now" in page
    assert "The allowlist is empty, so the endpoint refuses every caller until an address is added." in page
    assert "<strong>pending</strong>" in page
