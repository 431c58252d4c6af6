"""Fixtures for the serving tests: real model files and real server processes.

These tests never touch Django; the `settings` stand-in below keeps the root conftest happy
so they run with or without pytest-django (`-p no:django`).
"""

import types

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from serving.tests.support import IRIS_FEATURES, IRIS_LABELS, Server, stop_all, write_model


def pytest_addoption(parser):
    # Under `-p no:django` the DJANGO_SETTINGS_MODULE line in pyproject.toml would be an unknown
    # option, an error with warnings as errors; declaring it (as pytest-django does) keeps it valid.
    parser.addini("DJANGO_SETTINGS_MODULE", "Django settings module (used by pytest-django).")


@pytest.fixture
def settings():
    """A stand-in for pytest-django's `settings`: the root conftest's autouse fixture writes to it.

    These tests never touch Django, with or without pytest-django loaded.
    """
    return types.SimpleNamespace()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def iris_env(model_dir) -> dict:
    """The iris LogisticRegression with named features, as the portal would describe it."""
    import pandas as pd

    iris = load_iris()
    frame = pd.DataFrame(iris.data, columns=IRIS_FEATURES)
    estimator = LogisticRegression(max_iter=1000).fit(frame, iris.target)
    return write_model(model_dir, "iris", estimator, IRIS_FEATURES, IRIS_LABELS)


@pytest.fixture
def start_server(tmp_path):
    """Start servers for one test; each is stopped (SIGTERM, then SIGKILL) at teardown."""
    started = []

    def start(env: dict, **options) -> Server:
        server = Server(env, tmp_path / f"server-{len(started)}.log", **options)
        started.append(server)
        return server

    yield start
    stop_all(started)
