"""The Dockerfile and compose file describe the same processes the tests run."""

import re
import shlex
from pathlib import Path

import yaml

from portal import processes

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_names_every_service_the_readme_mentions():
    services = compose()["services"]
    readme = (ROOT / "README.md").read_text()
    for name in ("postgres", "redis", "web", "worker", "beat", "serving"):
        assert name in services
        assert f"`{name}`" in readme, f"README does not mention the {name} service"


def test_compose_runs_the_same_worker_and_beat_commands_as_manage_py_up():
    services = compose()["services"]
    assert services["worker"]["command"] == processes.worker()
    assert services["beat"]["command"] == processes.beat()


def test_compose_web_runs_migrations_then_the_same_web_server():
    command = compose()["services"]["web"]["command"]
    assert command[:2] == ["sh", "-c"]
    migrate, serve = command[2].split(" && ")
    assert migrate == "python manage.py migrate --noinput"
    assert shlex.split(serve.removeprefix("exec ")) == processes.web("0.0.0.0:8000")


def test_portal_services_wait_for_healthy_databases():
    services = compose()["services"]
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"


def dockerfile_stages() -> dict[str, tuple[str, list[str]]]:
    """Each named stage of the Dockerfile: the image it starts from and its instruction lines."""
    stages = {}
    for stage in re.split(r"^FROM ", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)[1:]:
        head, *lines = stage.splitlines()
        parent, _, name = head.partition(" AS ")
        stages[name] = (parent, [line for line in lines if line and not line.startswith("#")])
    return stages


def installed_requirements(stages: dict, target: str) -> list[str]:
    """The requirements files `pip install -r` reads in `target` and the stages it builds on."""
    files = []
    while target in stages:
        target, lines = stages[target]
        files[:0] = re.findall(r"^RUN pip install -r (\S+)", "\n".join(lines), flags=re.MULTILINE)
    return files


SERVING_TARGETS = ("serving", "serving-onnx")


def test_dockerfile_builds_portal_and_serving_targets_as_a_non_root_user():
    stages = dockerfile_stages()
    assert {"portal", *SERVING_TARGETS} <= set(stages)
    for name in ("portal", *SERVING_TARGETS):
        assert any(line.startswith("USER 10001") for line in stages[name][1]), name
    for name in SERVING_TARGETS:
        lines = stages[name][1]
        assert lines[0] == "COPY --chown=app:app serving/ serving/", name
        assert lines[-1] == 'CMD ["python", "-m", "serving"]', name
        assert "ENV PORT=8080" in lines and "EXPOSE 8080" in lines, name


def test_the_serving_images_differ_only_in_the_requirements_they_install():
    stages = dockerfile_stages()
    assert stages["serving"][1] == stages["serving-onnx"][1]
    assert installed_requirements(stages, "serving-onnx") == ["serving/requirements-onnx.txt"]
    assert installed_requirements(stages, "serving") == [
        "serving/requirements-onnx.txt",
        "serving/requirements.txt",
    ]


def requirement_lines(name: str) -> list[str]:
    lines = (line.strip() for line in (ROOT / name).read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_dockerfile_installs_the_pinned_requirements():
    for name in ("requirements.txt", "serving/requirements.txt", "serving/requirements-onnx.txt"):
        for line in requirement_lines(name):
            if not line.startswith("-r"):
                assert "==" in line, f"{name}: {line} is not pinned"


def test_the_full_serving_requirements_include_the_onnx_ones_and_pin_nothing_twice():
    full = requirement_lines("serving/requirements.txt")
    onnx = requirement_lines("serving/requirements-onnx.txt")
    assert "-r requirements-onnx.txt" in full
    names = [line.split("==")[0] for line in full + onnx if not line.startswith("-r")]
    assert len(names) == len(set(names)), names


def test_the_readme_documents_every_setting():
    names = set()
    for module in ("portal/settings.py", "portal/processes.py", "endpoints/management/commands/up.py"):
        text = (ROOT / module).read_text()
        names |= set(re.findall(r"env_\w+\(\s*\"([A-Z_]+)\"", text))
        names |= set(re.findall(r"os\.environ\.get\(\s*\"([A-Z_]+)\"", text))
    readme = (ROOT / "README.md").read_text()
    missing = sorted(name for name in names if f"| `{name}` |" not in readme)
    assert not missing, f"README's configuration table lacks {missing}"


def test_the_compose_environment_is_the_production_shape_check_deploy_accepts(tmp_path):
    """The images run with PRODUCTION=true; compose gives them every variable that needs."""
    import os
    import secrets
    import subprocess
    import sys

    from cryptography.fernet import Fernet

    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^\s+PRODUCTION=true$", dockerfile, flags=re.MULTILINE)
    chosen = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "KEY_SEALING_KEY": Fernet.generate_key().decode(),
        "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO",
    }
    env = {}
    for name, value in compose()["x-portal"]["environment"].items():
        required = re.fullmatch(r"\$\{(\w+):\?[^}]*\}", str(value))
        defaulted = re.fullmatch(r"\$\{(\w+):-([^}]*)\}", str(value))
        if required:
            env[name] = chosen[required.group(1)]
        elif defaulted:
            env[name] = chosen.get(defaulted.group(1), defaulted.group(2))
        else:
            env[name] = str(value)
    assert {"SECRET_KEY", "KEY_SEALING_KEY"} <= {name for name, value in env.items() if value}
    machine = {
        name: value
        for name, value in os.environ.items()
        if name not in env and not name.startswith("SECURE_")
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**machine, **env, "PRODUCTION": "true", "DEBUG": "false", "VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr
