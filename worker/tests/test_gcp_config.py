"""The GCP runtime's settings: checked at start-up, clients built lazily per process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.fakes.fixtures import *  # noqa: F403
from worker.runtimes.gcp.config import SETTINGS, GcpConfig, check_settings, parse_overrides
from worker.tests.settings_table import assert_readme_lists

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_required_value_is_named_at_start_up():
    with pytest.raises(ImproperlyConfigured) as missing:
        check_settings({"GCP_PROJECT": "p", "GCP_SERVICE_ACCOUNT_TEMPLATE": "{endpoint}"})

    message = str(missing.value)
    for name in ("GCP_SERVING_IMAGE", "GCP_ARTIFACT_BUCKET", "GCP_GATEWAY_SERVICE_ACCOUNT", "GCP_LB_DOMAIN"):
        assert name in message
    assert "GCP_PROJECT" not in message


def test_the_portal_refuses_to_start_with_runtime_gcp_and_no_project():
    env = {key: value for key, value in os.environ.items() if not key.startswith("GCP_")}
    env.update(RUNTIME="gcp", DJANGO_SETTINGS_MODULE="portal.settings")
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "RUNTIME=gcp needs GCP_PROJECT" in result.stderr


def test_each_setting_is_read_from_the_environment_with_its_default():
    env = {key: value for key, value in os.environ.items() if not key.startswith("GCP_")}
    env.update(RUNTIME="local", DJANGO_SETTINGS_MODULE="portal.settings")
    env.update(GCP_RETRY_ATTEMPTS="7", GCP_POLL_INTERVAL_SECONDS="0.5")
    code = (
        "from django.conf import settings\n"
        "from worker.runtimes.gcp.config import SETTINGS\n"
        "print(repr([getattr(settings, item.name) for item in SETTINGS]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    expected = {item.name: item.default for item in SETTINGS}
    expected.update(GCP_RETRY_ATTEMPTS=7, GCP_POLL_INTERVAL_SECONDS=0.5)
    assert result.stdout.strip() == repr(list(expected.values()))


def test_the_readme_lists_every_gcp_setting_with_its_default():
    assert_readme_lists(SETTINGS, "GCP_", "gcp")


def test_endpoint_overrides_name_known_apis_only():
    assert parse_overrides("run=insecure://127.0.0.1:1, compute=http://127.0.0.1:2") == {
        "run": "insecure://127.0.0.1:1",
        "compute": "http://127.0.0.1:2",
    }
    with pytest.raises(ImproperlyConfigured, match="'bigquery=x'"):
        parse_overrides("bigquery=x")


def test_a_long_endpoint_name_gets_a_shortened_service_account_id(gcp_settings):
    cfg = GcpConfig.from_settings()

    assert cfg.service_account_for("iris") == "ep-iris@portal-test.iam.gserviceaccount.com"
    long = cfg.service_account_for("a-rather-long-endpoint-name-for-fraud")
    account_id = long.split("@")[0]
    assert len(account_id) <= 30 and account_id.startswith("ep-a-rather-long-endpoi")
    assert long == cfg.service_account_for("a-rather-long-endpoint-name-for-fraud")


def test_no_client_is_built_before_first_use_and_each_process_builds_its_own(gcp, monkeypatch):
    clients = gcp.ctx.clients
    assert clients._cache == {}

    first = clients.run()
    assert clients.run() is first

    monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a forked Celery child
    assert clients.run() is not first
