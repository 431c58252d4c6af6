"""Fixtures of the fault suite: one private stack for the session, an admin on its API, two iris
versions; on a failure, the tails of every process's log go into the report."""

from __future__ import annotations

import logging
import os

import pytest

from tests.faults.api import Api, Records
from tests.faults.stack import SHORT_INTERVALS, Product, Stack

#: FAULTS_LONG=1 (scripts/faults --long) runs the long variants too.
LONG = os.environ.get("FAULTS_LONG") == "1"
USERNAME = "sre"
PASSWORD = "fault-suite-password-1"

logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would bury the reports

CAST = f"""
from django.contrib.auth import get_user_model
from endpoints.models import Team
user = get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r}, is_staff=True)
Team.objects.create(name="Faults").members.add(user)
"""


def _cast(product: Product) -> None:
    product.manage("shell", "-c", CAST)


@pytest.fixture(scope="session")
def stack():
    stack = Stack.create(setup=_cast)
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="session")
def api(stack) -> Api:
    api = Api(stack.product.url).sign_in(USERNAME, PASSWORD)
    yield api
    api.close()


@pytest.fixture(scope="session")
def records(stack) -> Records:
    records = Records(stack.postgres.url("portal"))
    yield records
    records.close()


@pytest.fixture(scope="session")
def iris(api) -> dict[int, dict]:
    """Two versions of iris (two fits, two artifacts), uploaded through the API: {1: ..., 2: ...}."""
    model = api.create_model("iris")
    return {1: api.upload_iris(model["id"], c=1.0), 2: api.upload_iris(model["id"], c=0.5)}


@pytest.fixture
def intervals(request, stack) -> str:
    """Parametrized indirectly: "short" (the suite's intervals) or "defaults" (the product's own,
    for the length of the test: relay 5 s, resend 10 s, claim 30 s, reconcile 60 s)."""
    if request.param == "short":
        yield "short"
        return
    stack.product.reconfigure({key: None for key in SHORT_INTERVALS})
    try:
        yield "defaults"
    finally:
        stack.product.reconfigure(SHORT_INTERVALS)


@pytest.fixture(autouse=True)
def _whole_stack(stack):
    """Each scenario starts with every server and process up, whatever the last one left."""
    stack.ensure_running()
    yield
    stack.ensure_running()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    stack = item.funcargs.get("stack") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(stack, Stack):
        report.sections.append(("process logs", stack.logs_text()))
    return report
