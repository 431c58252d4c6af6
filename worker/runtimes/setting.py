"""A runtime setting as one row of its runtime's table (see `worker.runtimes.gcp.config` and
`worker.runtimes.kubernetes.config`): `portal/settings.py` reads each row from the environment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    """One setting: its name (the environment variable and the Django setting), the config field it
    fills, its default (whose type, str, int or float, is the value's), what it is when it is
    required (named if it is missing), and how its value becomes the field's, when it is not as is."""

    name: str
    field: str
    default: str | int | float = ""
    required: str = ""
    parse: Callable[[Any], Any] | None = None
