"""Typed readers for environment variables and generated secret files, for the settings module only."""

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path


def env_str(name: str, default: str = "") -> str:
    """The variable's value; set but empty counts as unset (VAR_DIR= must not mean the cwd)."""
    return os.environ.get(name) or default


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {value!r}") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {value!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_secret(name: str, path: Path, generate: Callable[[], str]) -> str:
    """The secret in `name`, else the one in the file at `path`, generated there on first start.

    The file is created with mode 0600 and appears complete or not at all (written under a
    temporary name, then hard-linked into place, which fails if it exists), so processes that
    start together all read the one secret the first of them wrote. A file others can read, or an
    empty one, stops the start rather than be trusted.
    """
    value = os.environ.get(name, "")
    if value:
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(generate() + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process started at the same moment: read the one it wrote
        finally:
            os.unlink(temporary)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ValueError(f"{path} holds {name} and must be readable by its owner only: chmod 600 {path}")
    value = path.read_text().strip()
    if not value:
        raise ValueError(f"{path} is empty: delete it to generate a new {name}, or set {name}")
    return value
