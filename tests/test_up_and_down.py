"""`manage.py up` on its embedded defaults says the portal is there only once it answers, and
`manage.py down` stops it (and the local runtime's serving processes)."""

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

BASE = Path(__file__).resolve().parent.parent
START_SECONDS = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def embedded_env(tmp_path) -> dict:
    """The environment of a fresh machine: no DATABASE_URL or broker (SQLite and a filesystem
    broker under VAR_DIR), everything under a folder of its own."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
        and not key.startswith("PYTEST")
    }
    env.update(VAR_DIR=str(tmp_path / "var"), WEB_WORKERS="1", WORKER_CONCURRENCY="1")
    return env


def manage(*args: str) -> list[str]:
    return [sys.executable, str(BASE / "manage.py"), *args]


def test_up_says_portal_on_once_it_answers_and_down_stops_it(embedded_env):
    port = free_port()
    up = subprocess.Popen(
        manage("up", "--no-demo", "--port", str(port)),
        cwd=BASE,
        env=embedded_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        bufsize=1,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        lines = []
        assert up.stdout is not None
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Portal on"):
                break
        assert lines and lines[-1].strip() == f"Portal on http://127.0.0.1:{port}/", lines
        # Said only once it answers: the sign-in page is there at once.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=5) as page:
            assert page.status == 200
        assert "serving processes outlive it" in up.stdout.readline() + up.stdout.readline()
        drain = threading.Thread(target=up.stdout.read, daemon=True)  # the web server's access log
        drain.start()

        down = subprocess.run(
            manage("down"), cwd=BASE, env=embedded_env, capture_output=True, text=True, timeout=60
        )
        assert down.returncode == 0, down.stderr
        assert "Stopped the portal (web server, worker and beat)." in down.stdout
        assert "0 serving process(es) stopped." in down.stdout
        assert up.wait(timeout=30) == 0
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=2)
        assert not (Path(embedded_env["VAR_DIR"]) / "up.pid").exists()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, 9)
            up.wait()
        up.stdout.close()


def test_down_without_a_running_portal_says_so(embedded_env):
    down = subprocess.run(
        manage("down"), cwd=BASE, env=embedded_env, capture_output=True, text=True, timeout=60
    )
    assert down.returncode == 0, down.stderr
    assert "The portal is not running" in down.stdout
