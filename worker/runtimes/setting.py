"""A runtime setting as one row of its runtime's table (see `worker.runtimes.gcp.config` and
`worker.runtimes.kubernetes.config`): `portal/settings.py` reads each row from the environment."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


def from_django_settings(table: tuple[Setting, ...]) -> dict[str, Any]:
    """Each setting's value from the Django settings (which `portal/settings.py` reads from the
    environment as the table says), by name."""
    from django.conf import settings

    return {item.name: getattr(settings, item.name, item.default) for item in table}


def config_fields(
    table: tuple[Setting, ...], values: Mapping[str, Any], check: Callable[[Mapping[str, Any]], None]
) -> dict[str, Any]:
    """The config's fields from values by setting name, `check`ed first; a setting not given takes
    its default, and a value its `parse` reads becomes what it returns."""
    given = {item.name: values.get(item.name, item.default) for item in table}
    check(given)
    return {item.field: item.parse(given[item.name]) if item.parse else given[item.name] for item in table}
