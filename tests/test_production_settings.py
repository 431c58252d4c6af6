"""The production shape, and where the secrets come from, checked on real starts of the portal.

Every test starts `manage.py` or a short script in a fresh process with a chosen environment, as
a container or `scripts/up` would, so the settings module runs from the top each time.
"""

import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent
# The variables a test chooses itself; everything else comes from the machine (DATABASE_URL, ...).
CHOSEN = {"SECRET_KEY", "KEY_SEALING_KEY", "PRODUCTION", "DEBUG", "VAR_DIR", "ALLOWED_HOSTS"}
CHOSEN |= {name for name in os.environ if name.startswith("SECURE_")}

SHOW_SECRETS = (
    "import django; django.setup(); from django.conf import settings; "
    "print(settings.SECRET_KEY); print(','.join(settings.KEY_SEALING_KEYS))"
)


def start(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {name: value for name, value in os.environ.items() if name not in CHOSEN}
    return subprocess.run(
        [sys.executable, *args],
        cwd=BASE_DIR,
        env={**base, "DJANGO_SETTINGS_MODULE": "portal.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def production_env(var_dir: Path) -> dict[str, str]:
    """The production shape as the README documents it (behind a proxy that terminates TLS)."""
    return {
        "PRODUCTION": "true",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "KEY_SEALING_KEY": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "portal.example.com",
        "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO",
        "VAR_DIR": str(var_dir),
    }


# -- check --deploy --------------------------------------------------------------------------------


def test_check_deploy_prints_no_warning_in_the_production_shape(tmp_path):
    result = start(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output and "security.W" not in output
    assert "System check identified no issues" in output
    # The secrets came from the environment: nothing was generated into VAR_DIR.
    assert not (tmp_path / "secret_key").exists() and not (tmp_path / "key_sealing_key").exists()


def test_check_deploy_warns_in_the_embedded_shape(tmp_path):
    """The same check on the embedded defaults finds the HTTPS settings off: it can fail."""
    result = start(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], {"VAR_DIR": str(tmp_path)})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in output


def test_production_answers_over_https_only_with_hsts_secure_cookies_and_the_csp(tmp_path):
    script = """
import json, django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="portal.example.com")
plain = client.get("/accounts/login/")
secure = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
cookie = secure.cookies["csrftoken"]
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location")],
    "secure": secure.status_code,
    "hsts": secure.get("Strict-Transport-Security"),
    "csp": secure.get("Content-Security-Policy"),
    "csrf_cookie_secure": bool(cookie["secure"]),
}))
"""
    result = start(["-c", script], production_env(tmp_path))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["plain"] == [301, "https://portal.example.com/accounts/login/"]
    assert answer["secure"] == 200
    assert answer["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert "script-src 'self'" in answer["csp"]
    assert answer["csrf_cookie_secure"] is True


# -- refusals at start -----------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["SECRET_KEY", "KEY_SEALING_KEY"])
def test_production_refuses_to_start_without_its_secrets_in_the_environment(tmp_path, missing):
    env = production_env(tmp_path)
    del env[missing]
    result = start(["manage.py", "check"], env)
    assert result.returncode != 0
    assert f"PRODUCTION=true needs {missing} set in the environment" in result.stderr
    assert not list(tmp_path.iterdir())  # and generated nothing instead


def test_production_refuses_to_start_with_debug_on(tmp_path):
    result = start(["manage.py", "check"], {**production_env(tmp_path), "DEBUG": "true"})
    assert result.returncode != 0
    assert "DEBUG must be false when PRODUCTION=true" in result.stderr


@pytest.mark.parametrize("value", ["hunter2", " , "])
def test_a_sealing_key_that_is_not_a_fernet_key_stops_the_start(tmp_path, value):
    result = start(["manage.py", "check"], {"VAR_DIR": str(tmp_path), "KEY_SEALING_KEY": value})
    assert result.returncode != 0
    assert "KEY_SEALING_KEY must be comma-separated Fernet keys" in result.stderr


def test_a_proxy_header_that_is_not_a_meta_name_stops_the_start(tmp_path):
    env = {"VAR_DIR": str(tmp_path), "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"}
    result = start(["manage.py", "check"], env)
    assert result.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER is a request.META name" in result.stderr


# -- generated secrets -----------------------------------------------------------------------------


def test_the_secrets_are_generated_on_first_start_with_mode_0600_and_reused(tmp_path):
    first = start(["-c", SHOW_SECRETS], {"VAR_DIR": str(tmp_path)})
    assert first.returncode == 0, first.stderr
    secret_key, sealing_key = first.stdout.split()
    for name, value in (("secret_key", secret_key), ("key_sealing_key", sealing_key)):
        path = tmp_path / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().strip() == value
    assert len(secret_key) >= 50
    Fernet(sealing_key)  # a usable key

    again = start(["-c", SHOW_SECRETS], {"VAR_DIR": str(tmp_path)})
    assert again.stdout.split() == [secret_key, sealing_key]
    elsewhere = start(["-c", SHOW_SECRETS], {"VAR_DIR": str(tmp_path / "other")})
    assert set(elsewhere.stdout.split()).isdisjoint({secret_key, sealing_key})  # generated, not a constant


def test_processes_starting_together_agree_on_the_generated_secrets(tmp_path):
    base = {name: value for name, value in os.environ.items() if name not in CHOSEN}
    env = {**base, "DJANGO_SETTINGS_MODULE": "portal.settings", "VAR_DIR": str(tmp_path)}
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", SHOW_SECRETS], cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = {process.communicate(timeout=120)[0] for process in starts}
    assert all(process.returncode == 0 for process in starts)
    assert len(outputs) == 1
    assert sorted(path.name for path in tmp_path.iterdir() if "key" in path.name) == [
        "key_sealing_key",
        "secret_key",
    ]  # and no half-written temporary file left behind


def test_a_secret_file_others_can_read_stops_the_start(tmp_path):
    assert start(["-c", SHOW_SECRETS], {"VAR_DIR": str(tmp_path)}).returncode == 0
    (tmp_path / "secret_key").chmod(0o644)
    result = start(["-c", SHOW_SECRETS], {"VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert f"chmod 600 {tmp_path / 'secret_key'}" in result.stderr


def test_an_empty_secret_file_stops_the_start(tmp_path):
    path = tmp_path / "key_sealing_key"
    path.touch(mode=0o600)
    result = start(["-c", SHOW_SECRETS], {"VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert f"{path} is empty" in result.stderr


def test_a_secret_from_the_environment_wins_over_the_file(tmp_path):
    assert start(["-c", SHOW_SECRETS], {"VAR_DIR": str(tmp_path)}).returncode == 0
    chosen = secrets.token_urlsafe(50)
    result = start(["-c", SHOW_SECRETS], {"VAR_DIR": str(tmp_path), "SECRET_KEY": chosen})
    assert result.stdout.split()[0] == chosen


def test_a_variable_set_but_empty_counts_as_unset(tmp_path):
    """VAR_DIR= (as an env file or a compose entry leaves it) must not put the data in the cwd."""
    shown = start(
        ["-c", "import django; django.setup(); from django.conf import settings; print(settings.VAR_DIR)"],
        {"VAR_DIR": "", "RUNTIME": ""},
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == str(BASE_DIR / "var")
