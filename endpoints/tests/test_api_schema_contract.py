"""The REST API answers as /api/schema/ says, checked by schemathesis with every check.

Its examples, coverage, fuzzing and stateful phases run against the portal's own schema, served
by a live test server on the memory runtime (nothing is deployed for real), signed in as an
admin with records to find: a model with a version, an endpoint, a team. The operations include
revoking API tokens, the run's own among them: whenever a request comes back 401, the next one
carries a new token. schemathesis.toml beside this file says what the run expects beyond
schemathesis's defaults, and why.
"""

import gc
from pathlib import Path

import pytest
import schemathesis
from django.db import connection
from schemathesis.engine import Status, events, from_schema

from endpoints.services.tokens import api_token_issue

CONFIG = Path(__file__).with_name("schemathesis.toml")


def failures_of(event: events.ScenarioFinished) -> list[str]:
    found = []
    for case_id, checks in event.recorder.checks.items():
        for check in checks:
            if check.status == Status.FAILURE and check.failure_info is not None:
                failure = check.failure_info.failure
                interaction = event.recorder.interactions.get(case_id)
                answer = interaction.response if interaction is not None else None
                said = f"{answer.status_code} {answer.content[:300]!r}" if answer is not None else "no answer"
                found.append(
                    f"[{event.phase.value}] {event.recorder.label}: {check.name}: {failure.title}\n"
                    f"{failure.message}\n{check.failure_info.code_sample}\nAnswered: {said}"
                )
    return found


def run(schema) -> list[str]:
    """Every failure of a full schemathesis run, as text (empty when the API keeps its contract)."""
    found: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            found.extend(failures_of(event))
        elif isinstance(event, events.NonFatalError):
            found.append(f"error in {event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            found.extend(f"after the run: {failure.title}: {failure.message}" for failure in event.failures)
    return found


@pytest.fixture
def _forget_sign_in_failures():
    """The run's failed sign-ins lock 127.0.0.1 out; the counters live in the cache, which a
    transactional test's flush does not empty: forget them for the tests after this one."""
    yield
    from django.core.cache import cache

    cache.clear()
    # The live server's request threads are gone; their database sessions close once the
    # connections they leave are collected, and the test database cannot be dropped before.
    gc.collect()


@pytest.mark.usefixtures("_forget_sign_in_failures")
@pytest.mark.django_db(transaction=True)
def test_every_schemathesis_check_passes_on_the_api(
    live_server, admin, team, iris_version, endpoint, memory_runtime, sent
):
    schema = schemathesis.openapi.from_url(
        f"{live_server.url}/api/schema/?format=json", config=schemathesis.Config.from_path(CONFIG)
    )

    @schema.auth()
    class AdminToken:
        """A new token for the admin, fetched again after a 401 (the run may revoke its own)."""

        def get(self, case, context):
            try:
                return api_token_issue(user=admin, address="127.0.0.1")[1]
            finally:
                connection.close()  # this runs in the engine's thread: leave no connection open

        def set(self, case, token, context):
            case.headers = {**(case.headers or {}), "Authorization": f"Token {token}"}

    failures = run(schema)
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(failures[:30])
