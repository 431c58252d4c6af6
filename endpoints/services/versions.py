"""Register models and model versions from uploaded artifacts."""

import hashlib
import json

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Max

from endpoints.artifacts import ArtifactError, format_for, info_from_job, parse_label_map
from endpoints.models import PICKLE_FORMATS, MLModel, ModelVersion
from endpoints.sandbox import client as sandbox
from endpoints.services.audit import audit_record
from endpoints.services.errors import ServiceError, Unprocessable, refuse_all, require_admin

LIMIT_NAMES = {
    "memory": "memory limit (SANDBOX_MEMORY_BYTES)",
    "cpu_time": "CPU time limit (SANDBOX_CPU_SECONDS)",
    "wall_time": "wall-time limit (SANDBOX_WALL_SECONDS)",
    "file_size": "file size limit (SANDBOX_FILE_BYTES)",
}


MODEL_NAME_REFUSED = "A model name cannot contain '/' or be '.' or '..'."
#: What ml_model_create takes as a name, for the API's schema: something besides spaces, no '/',
#: not '.' or '..' (spaces around it are stripped).
MODEL_NAME_PATTERN = r"^(?!\s*\.{1,2}\s*$)[^/]*[^/\s][^/]*$"


def _json_field(raw, field: str):
    if raw is None or isinstance(raw, (list, dict)):
        return raw
    if isinstance(raw, str):
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise Unprocessable(
                f"This is not valid JSON: {exc.msg} at position {exc.pos}.", field=field
            ) from None
    raise Unprocessable("Expected JSON text.", field=field)


def _artifact_format(upload) -> str:
    """The artifact's format from its name, once it is there and within the size limit."""
    if upload is None:
        raise ServiceError("Choose a model file to upload.", field="artifact")
    try:
        fmt = format_for(upload.name)
    except ArtifactError as exc:
        raise Unprocessable(str(exc), field=exc.field) from None
    size = getattr(upload, "size", None)
    if size is not None and size > settings.MODEL_UPLOAD_MAX_BYTES:
        raise ServiceError(
            f"The file is {size:,} bytes; the limit is {settings.MODEL_UPLOAD_MAX_BYTES:,}.",
            field="artifact",
            code="too_large",
        )
    return fmt


def _metrics(raw) -> dict:
    metrics = _json_field(raw, "metrics")
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise Unprocessable("Metrics must be a JSON object.", field="metrics")
    return metrics


def _trusted_types(raw) -> list[str]:
    """The type names an admin accepts: a JSON list, or text with one name a line or comma."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        text = raw.strip()
        raw = _json_field(text, "trusted_types") if text.startswith("[") else text.replace(",", "\n").split()
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        raise Unprocessable("Trusted types must be a list of type names.", field="trusted_types")
    return sorted({name.strip() for name in raw if name.strip()})


def ml_model_create(*, user, name: str, description: str = "") -> MLModel:
    require_admin(user)
    name = (name or "").strip()
    if not name:
        raise ServiceError("Give the model a name.", field="name")
    if "/" in name or name in (".", ".."):
        # The dashboard finds models by name in its URLs (/models/<name>/).
        raise ServiceError(MODEL_NAME_REFUSED, field="name")
    if MLModel.objects.filter(name=name).exists():
        raise ServiceError(f"A model named {name!r} already exists.", field="name", code="conflict")
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
    trusted_types=None,
    metrics=None,
    example=None,
) -> ModelVersion:
    """Inspect an uploaded artifact in the sandbox and record it as the model's next version.

    `upload` is any file object with a `name` (a Django UploadedFile in the views). Nothing is
    written unless the file loads, predicts, and matches the schema and label map given.
    `trusted_types` are the skops type names the admin accepts, exactly as the file lists them.
    `example` is an example row (a JSON object of named features, or a list of a few), checked
    against the schema and on the model; without it, example rows are read from the model.
    """
    require_admin(user)
    problems: list[ServiceError] = []

    def checked(parse, *args):
        """`parse(*args)`, or None with its refusal kept: every field's problem is told at once."""
        try:
            return parse(*args)
        except ServiceError as exc:
            problems.append(exc)
            return None

    fmt = checked(_artifact_format, upload)
    schema = checked(_json_field, input_schema, "input_schema")
    labels = checked(_json_field, label_map, "label_map")
    example = checked(_json_field, example, "example")
    metrics = checked(_metrics, metrics)
    trusted = checked(_trusted_types, trusted_types)
    refuse_all(problems)

    with sandbox.workspace() as folder:
        local = folder / f"artifact.{fmt}"
        with open(local, "wb") as out:
            for chunk in (
                upload.chunks() if hasattr(upload, "chunks") else iter(lambda: upload.read(1 << 20), b"")
            ):
                out.write(chunk)
        job = {
            "artifact": local.name,
            "format": fmt,
            "trust_code": trust_code,
            "trusted_types": trusted,
            "schema": schema,
            "max_expanded_bytes": settings.MODEL_EXPANDED_MAX_BYTES,
            "example": example,
        }
        try:
            info = info_from_job(folder, sandbox.run(folder, job))
            labels = parse_label_map(labels, info.classes)
        except sandbox.SandboxError as exc:
            limit = LIMIT_NAMES.get(exc.limit)
            what = f"hit the sandbox's {limit}" if limit else "did not finish"
            raise Unprocessable(f"Loading the model {what}: {exc}", field="artifact") from None
        except ArtifactError as exc:
            extra = {"untrusted_types": exc.untrusted_types} if exc.untrusted_types else None
            raise Unprocessable(str(exc), field=exc.field, extra=extra) from None

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
                        examples=info.examples,
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
                            "trusted_types": info.trusted_types,
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
                        "Another version was registered at the same time; try again.", code="conflict"
                    ) from None
    raise AssertionError("unreachable")


def model_version_examples_read(*, version: ModelVersion) -> dict:
    """Read example rows from a registered version's artifact, in the sandbox, and keep them: for
    versions registered before examples were kept (`manage.py version_examples`).

    The artifact loads with the trust it was registered with (its trusted types; a pickle, which
    an admin trusted to register it). Raises ServiceError when the sandbox cannot read it.
    """
    with sandbox.workspace() as folder:
        local = folder / f"artifact.{version.format}"
        with version.artifact.open("rb") as source, open(local, "wb") as out:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                out.write(chunk)
        job = {
            "examples_only": True,
            "artifact": local.name,
            "format": version.format,
            "trust_code": version.format in PICKLE_FORMATS,
            "trusted_types": list(version.trusted_types),
            "schema": version.input_schema,
            "max_expanded_bytes": settings.MODEL_EXPANDED_MAX_BYTES,
        }
        try:
            result = sandbox.run(folder, job)
        except sandbox.SandboxError as exc:
            raise ServiceError(f"Reading {version}'s examples did not finish: {exc}") from None
    if not result.get("ok"):
        raise ServiceError(f"{version}: {result.get('error') or 'the artifact could not be read'}")
    ModelVersion.objects.filter(pk=version.pk).update(examples=result["examples"])
    version.examples = result["examples"]
    version.__dict__.pop("example_set", None)
    return result["examples"]
