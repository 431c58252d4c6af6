"""The test cast (an admin, a team member, a stranger) and the iris model, shared by all tests."""

import pytest
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, settings

from endpoints.demo import IRIS_LABELS, NamedBytes, iris_skops_bytes

pytest_plugins = ["tests.fixtures.worker"]

# Generated-input tests draw the same examples on every run (here and in CI), with no deadline on
# a shared machine; fixtures that set up a server or a database row are meant to be reused.
settings.register_profile(
    "portal",
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
settings.load_profile("portal")


@pytest.fixture(scope="session", autouse=True)
def _sandbox_server(tmp_path_factory):
    """Every upload in the session shares one sandbox server, stopped at the end."""
    yield
    from worker.runtimes.local import processes

    pid = processes.read_pid_file(tmp_path_factory.getbasetemp() / "sandbox" / "sandbox.pid")
    if pid is not None:
        processes.terminate(pid, grace=2.0)


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path_factory):
    settings.MEDIA_ROOT = tmp_path_factory.getbasetemp() / "media"
    settings.LOCAL_RUNTIME_DIR = tmp_path_factory.getbasetemp() / "runtime"
    settings.SANDBOX_DIR = tmp_path_factory.getbasetemp() / "sandbox"
    # The default hasher costs about a second per user on these machines; tests need no strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def iris_bytes() -> bytes:
    return iris_skops_bytes()


@pytest.fixture
def admin(db):
    return get_user_model().objects.create_user("ada", password="ada-password-1", is_staff=True)


@pytest.fixture
def team(db):
    from endpoints.models import Team

    return Team.objects.create(name="Data science")


@pytest.fixture
def member(db, team):
    user = get_user_model().objects.create_user("tom", password="tom-password-1")
    team.members.add(user)
    return user


@pytest.fixture
def stranger(db):
    from endpoints.models import Team

    user = get_user_model().objects.create_user("sam", password="sam-password-1")
    Team.objects.create(name="Other team").members.add(user)
    return user


@pytest.fixture
def iris_version(admin, iris_bytes):
    from endpoints.services.versions import ml_model_create, model_version_register

    ml_model = ml_model_create(user=admin, name="iris")
    return model_version_register(
        user=admin, ml_model=ml_model, upload=NamedBytes(iris_bytes, "iris.skops"), label_map=IRIS_LABELS
    )


@pytest.fixture
def endpoint(admin):
    from endpoints.services.endpoints import endpoint_create

    return endpoint_create(user=admin, name="iris-prod")


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, list]]:
    """What the services hand to the broker (task name, args), instead of sending it."""
    calls: list[tuple[str, list]] = []
    monkeypatch.setattr(
        "portal.celery.app.send_task", lambda name, args=None, **kw: calls.append((name, args))
    )
    return calls


@pytest.fixture
def memory_runtime(settings):
    """RUNTIME=memory: deployments finish at once and nothing runs; the runtime records every call
    and can be told to fail (see `worker.runtimes.memory`)."""
    from worker.runtimes import get_runtime

    settings.RUNTIME = "memory"
    return get_runtime()
