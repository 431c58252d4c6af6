"""Register models and model versions from uploaded artifacts."""

import hashlib
import json
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Max

from endpoints.artifacts import ArtifactError, format_for, inspect_artifact, parse_label_map
from endpoints.models import PICKLE_FORMATS, MLModel, ModelVersion
from endpoints.services.audit import audit_record
from endpoints.services.errors import ServiceError, require_admin


def _json_field(raw, field: str):
    if raw is None or isinstance(raw, (list, dict)):
        return raw
    if isinstance(raw, str):
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ServiceError(
                f"This is not valid JSON: {exc.msg} at position {exc.pos}.", field=field
            ) from None
    raise ServiceError("Expected JSON text.", field=field)


def ml_model_create(*, user, name: str, description: str = "") -> MLModel:
    require_admin(user)
    name = (name or "").strip()
    if not name:
        raise ServiceError("Give the model a name.", field="name")
    if "/" in name or name in (".", ".."):
        # The dashboard finds models by name in its URLs (/models/<name>/).
        raise ServiceError("A model name cannot contain '/' or be '.' or '..'.", field="name")
    if MLModel.objects.filter(name=name).exists():
        raise ServiceError(f"A model named {name!r} already exists.", field="name")
    with transaction.atomic():
        ml_model = MLModel.objects.create(name=name, description=description, owner=user)
        audit_record(actor=user, action="model.create", target=ml_model)
    return ml_model


def model_version_register(
    *,
    user,
    ml_model: MLModel,
    upload,
    input_schema=None,
    label_map=None,
    trust_code: bool = False,
    metrics=None,
) -> ModelVersion:
    """Inspect an uploaded artifact and record it as the model's next version.

    `upload` is any file object with a `name` (a Django UploadedFile in the views). Nothing is
    written unless the file loads, predicts, and matches the schema and label map given.
    """
    require_admin(user)
    if upload is None:
        raise ServiceError("Choose a model file to upload.", field="artifact")
    try:
        fmt = format_for(upload.name)
    except ArtifactError as exc:
        raise ServiceError(str(exc), field=exc.field) from None
    size = getattr(upload, "size", None)
    if size is not None and size > settings.MODEL_UPLOAD_MAX_BYTES:
        raise ServiceError(
            f"The file is {size:,} bytes; the limit is {settings.MODEL_UPLOAD_MAX_BYTES:,}.",
            field="artifact",
        )
    schema = _json_field(input_schema, "input_schema")
    labels = _json_field(label_map, "label_map")
    metrics = _json_field(metrics, "metrics") or {}
    if not isinstance(metrics, dict):
        raise ServiceError("Metrics must be a JSON object.", field="metrics")

    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / f"artifact.{fmt}"
        with open(local, "wb") as out:
            for chunk in (
                upload.chunks() if hasattr(upload, "chunks") else iter(lambda: upload.read(1 << 20), b"")
            ):
                out.write(chunk)
        try:
            info = inspect_artifact(local, fmt, trust_code=trust_code, schema=schema)
            labels = parse_label_map(labels, info.classes)
        except ArtifactError as exc:
            raise ServiceError(str(exc), field=exc.field) from None

        for attempt in range(3):
            try:
                with transaction.atomic():
                    number = (ml_model.versions.aggregate(n=Max("number"))["n"] or 0) + 1
                    version = ModelVersion(
                        model=ml_model,
                        number=number,
                        sha256=info.sha256,
                        size_bytes=info.size_bytes,
                        format=fmt,
                        input_schema=info.input_schema,
                        classes=info.classes,
                        label_map=labels,
                        trusted_types=info.trusted_types,
                        estimator=info.estimator,
                        sklearn_version=info.sklearn_version,
                        onnx_note=info.onnx_note,
                        metrics=metrics,
                        created_by=user,
                    )
                    stem = f"{ml_model.name}-v{number}-{info.sha256[:12]}"
                    with open(local, "rb") as handle:
                        version.artifact.save(f"{stem}.{fmt}", File(handle), save=False)
                    if info.onnx is not None:
                        version.onnx_sha256 = hashlib.sha256(info.onnx).hexdigest()
                        version.onnx_artifact.save(f"{stem}.onnx", ContentFile(info.onnx), save=False)
                    version.save()
                    audit_record(
                        actor=user,
                        action="model_version.register",
                        target=version,
                        details={
                            "sha256": info.sha256,
                            "format": fmt,
                            "trusted_code": trust_code and fmt in PICKLE_FORMATS,
                            "onnx_sha256": version.onnx_sha256,
                        },
                    )
                return version
            except IntegrityError:
                version.artifact.delete(save=False)
                if version.onnx_artifact:
                    version.onnx_artifact.delete(save=False)
                if attempt == 2:
                    raise ServiceError(
                        "Another version was registered at the same time; try again."
                    ) from None
    raise AssertionError("unreachable")
