"""The `serving-onnx` image's package set, read from its requirements file and the installed metadata.

`slim_env` makes a `python -m serving` process see only what that image installs: a
`sitecustomize.py` refuses to import any top-level module that no distribution of the set
provides, as if it were not installed. The same closure gives each image's installed size.
"""

from __future__ import annotations

import os
import re
from functools import cache
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
FULL = REPO / "serving" / "requirements.txt"
SLIM = REPO / "serving" / "requirements-onnx.txt"
# What the full image adds; the slim one must never need these.
HEAVY = ("sklearn", "scipy", "pandas", "skops", "skl2onnx", "onnxmltools", "xgboost", "lightgbm")

GUARD = '''\
"""Imports as in the serving-onnx image: modules of packages it does not install are missing."""
import importlib.machinery
import sys

BLOCKED = frozenset({blocked!r})
RECORD = {record!r}


class SlimImage:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} in the serving-onnx image", name=name)
        if RECORD:
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None and spec.has_location:
                with open(RECORD, "a") as log:
                    log.write(spec.origin + "\\n")
        return None


sys.meta_path.insert(0, SlimImage)
'''


def requirement_names(path: Path) -> list[str]:
    """The distributions a requirements file pins, following `-r` includes, canonically named."""
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r"):
            names += requirement_names(path.parent / line.removeprefix("-r").strip())
        elif line:
            names.append(canonicalize_name(Requirement(line).name))
    return names


def closure(names: list[str]) -> set[str]:
    """`names` and every distribution they require (no extras), as installed here."""
    found: set[str] = set()
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        found.add(name)
        for line in metadata.distribution(name).requires or ():
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found


def installed_bytes(distributions: set[str]) -> int:
    """The size on disk of every file the distributions installed (their RECORD)."""
    total = 0
    for name in distributions:
        for file in metadata.distribution(name).files or ():
            path = Path(file.locate())
            if path.is_file():
                total += path.stat().st_size
    return total


@cache
def owners() -> dict[str, str]:
    """Each installed file's path and the distribution it belongs to."""
    found = {}
    for dist in metadata.distributions():
        root = Path(dist.locate_file("")).resolve()
        name = canonicalize_name(dist.metadata["Name"])
        found.update((os.path.normpath(root / file), name) for file in dist.files or ())
    return found


def blocked_modules(allowed: set[str]) -> set[str]:
    """Top-level modules installed here that no distribution in `allowed` provides."""
    return {
        module
        for module, dists in metadata.packages_distributions().items()
        if re.fullmatch(r"\w+", module) and not allowed & {canonicalize_name(dist) for dist in dists}
    }


def slim_env(directory: Path, record: Path | None = None) -> dict:
    """Environment for a process that imports only what the serving-onnx image installs; with
    `record`, the file each import was found in is appended to it."""
    blocked = sorted(blocked_modules(closure(requirement_names(SLIM))))
    (directory / "sitecustomize.py").write_text(
        GUARD.format(blocked=blocked, record=str(record) if record else None)
    )
    return {"PYTHONPATH": os.pathsep.join([str(directory), str(REPO)])}
