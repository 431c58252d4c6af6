"""Schemathesis, with every check, against the /openapi.json of served models.

Its examples, coverage, fuzzing and stateful phases run against the iris classifier behind an
access file (given its key; the ignored_auth check tries without), and a classifier with integer
and boolean features. schemathesis.toml beside this file says what it expects beyond its
defaults, and why.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from serving.tests.test_openapi import KEY, servers  # noqa: F401 (a fixture)

CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.mark.parametrize("case", ["iris_with_keys", "risk"])
def test_every_schemathesis_check_passes(servers, case, tmp_path):  # noqa: F811
    server, _, _, keys = servers[case]
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run"]
    command += [f"{server.url}/openapi.json", "--checks", "all", "--max-examples", "5", "--seed", "1"]
    command += ["--generation-database", "none", "--no-color", "--output-truncate", "true"]
    if keys:
        command += ["--header", f"x-api-key: {KEY}"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
