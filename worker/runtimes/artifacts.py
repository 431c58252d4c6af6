"""A model artifact placed where serving reads it: a verified copy (or hard link) named by its sha256.

The local runtime places artifacts in its own folder; the kubernetes runtime on the volume its pods
mount. Either way the file is written under a temporary name, hashed, and renamed into place only
when its sha256 is the version's, so a reader never sees a damaged or half-written artifact.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

from serving.artifacts import sha256_of
from worker.runtimes.base import ModelSpec, PermanentError

SHA256 = re.compile(r"^[0-9a-f]{64}$")
FORMAT = re.compile(r"^[a-z0-9]+$")


def artifact_name(model: ModelSpec) -> str:
    """`<sha256>.<format>`: the same artifact has one name, whichever version or endpoint uses it."""
    if not SHA256.match(model.sha256 or ""):
        raise PermanentError(f"the version records no valid sha256 ({model.sha256!r})")
    if not FORMAT.match(model.format or ""):
        raise PermanentError(f"unknown artifact format {model.format!r}")
    return f"{model.sha256}.{model.format}"


def place_artifact(model: ModelSpec, folder: Path) -> str:
    """Put the model's artifact in `folder` as `artifact_name(model)`, verified; says what it did."""
    target = folder / artifact_name(model)
    if target.exists():
        return f"Artifact {model.sha256[:12]} already in place."
    source = Path(model.artifact_path)
    if not source.is_file():
        raise PermanentError(f"the artifact file {source.name} is missing from the media store")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        try:
            os.link(source, tmp)
            how = "linked"
        except OSError:
            shutil.copyfile(source, tmp)
            how = "copied"
        actual = sha256_of(tmp)
        if actual != model.sha256:
            raise PermanentError(
                f"sha256 mismatch: the artifact file hashes to {actual[:12]}…, "
                f"the version records {model.sha256[:12]}…; the file was changed or damaged"
            )
        size = tmp.stat().st_size
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return f"Artifact {model.sha256[:12]} {how} and verified ({_size(size)})."


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"
