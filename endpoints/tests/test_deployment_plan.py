"""Plan mode on the local runtime: what a deploy would do, with nothing written or started."""

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from endpoints.models import AuditEvent, Deployment
from endpoints.services.deployments import model_spec_for
from worker.runtimes.local.state import RuntimeDir
from worker.runtimes.memory import MemoryRuntime


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def plan(user, endpoint, version, **extra):
    return api(user).post(
        f"/api/v1/endpoints/{endpoint.name}/plan/", {"model_version": version.pk, **extra}, format="json"
    )


def test_planning_a_first_local_deploy_lists_its_steps_and_touches_nothing(admin, endpoint, iris_version):
    response = plan(admin, endpoint, iris_version)

    assert response.status_code == 200
    body = response.json()
    assert (body["endpoint"], body["model_version"], body["runtime"]) == (
        "iris-prod",
        iris_version.pk,
        "local",
    )
    assert [(c["step"], c["action"]) for c in body["changes"]] == [
        ("artifact", "create"),
        ("access", "create"),
        ("start", "create"),
        ("switch", "update"),
        ("stop_previous", "none"),
    ]
    start = body["changes"][2]["detail"]
    assert (
        "iris v1" in start and f"{settings.LOCAL_RUNTIME_PORT_MIN}-{settings.LOCAL_RUNTIME_PORT_MAX}" in start
    )
    assert Deployment.objects.count() == 0
    assert not AuditEvent.objects.filter(action__startswith="deployment").exists()
    runtime = RuntimeDir(settings.LOCAL_RUNTIME_DIR)
    assert not runtime.endpoint("iris-prod").path.exists()
    served = model_spec_for(iris_version)
    assert not runtime.artifact(served.sha256, served.format).exists()


def test_a_plan_names_the_endpoints_port_and_the_access_it_would_rewrite(admin, endpoint, iris_version):
    target = RuntimeDir(settings.LOCAL_RUNTIME_DIR).endpoint("iris-prod")
    target.path.mkdir(parents=True)
    target.port_file.write_text("18123\n")
    target.write_access({"mode": "open", "keys": [], "cidrs": []})

    changes = plan(admin, endpoint, iris_version).json()["changes"]

    assert changes[1] == {
        "step": "access",
        "action": "update",
        "detail": "rewrite mode api_key, 0 key(s), 0 network(s)",
    }
    assert "on port 18123" in changes[2]["detail"]
    assert changes[3]["detail"].startswith("http://127.0.0.1:18123 answers from iris-prod-d")


class OneVersionRuntime(MemoryRuntime):
    """A runtime that cannot split traffic (RUNTIME takes a Runtime subclass's dotted path)."""

    name = "single"
    supports_canary = False


def test_a_canary_on_a_runtime_that_cannot_split_traffic_is_refused_when_it_is_asked_for(
    admin, endpoint, iris_version, memory_runtime, settings
):
    from endpoints.services.deployments import deployment_request
    from endpoints.services.operations import deployment_run

    live = deployment_request(user=admin, endpoint=endpoint, model_version=iris_version)
    deployment_run(deployment_id=live.pk)  # made live at once by the memory runtime
    settings.RUNTIME = f"{__name__}.OneVersionRuntime"

    for response in (
        plan(admin, endpoint, iris_version, traffic_percent=10),
        api(admin).post(
            f"/api/v1/endpoints/{endpoint.name}/deploy/",
            {"model_version": iris_version.pk, "traffic_percent": 10},
            format="json",
        ),
    ):
        assert response.status_code == 422
        assert response.json()["field"] == "traffic_percent"
        assert "The single runtime serves one version at a time" in response.json()["detail"]
    assert endpoint.deployments.count() == 1


def test_a_canary_plan_without_a_live_version_names_the_traffic_field(admin, endpoint, iris_version):
    response = plan(admin, endpoint, iris_version, traffic_percent=10)
    assert response.status_code == 409
    assert response.json()["field"] == "traffic_percent"


def test_a_team_member_may_not_plan_a_deploy(member, endpoint, iris_version):
    assert plan(member, endpoint, iris_version).status_code == 403


def test_the_command_prints_the_plan(admin, endpoint, iris_version, capsys):
    call_command("deploy_plan", "iris-prod", "iris", "1")
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "Deploying iris v1 to iris-prod would:"
    assert "start" in out and "stop_previous" in out
    assert Deployment.objects.count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nowhere", "iris", "1"), "No endpoint named 'nowhere'."),
        (("iris-prod", "iris", "7"), "No version 7 of model 'iris'."),
        (("iris-prod", "iris", "1", "--traffic", "0"), "Traffic must be a whole percentage from 1 to 100."),
    ],
)
def test_the_command_refuses_in_plain_words(admin, endpoint, iris_version, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("deploy_plan", *args)
