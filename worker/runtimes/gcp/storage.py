"""Cloud Storage: the model artifact in the bucket under its sha256, readable by the endpoint.

The object is named `<sha256>.<format>`, so it is uploaded once however many deployments use it,
and the upload is create-only (`if_generation_match=0`): two workers racing both succeed and the
object is written once. The endpoint's service account gets `roles/storage.objectViewer` on the
bucket by read-modify-write of the bucket's IAM policy (with its etag), so the serving container
can read `SERVING_MODEL_URI` at start. An endpoint's delete takes the grant back (before the account
goes: IAM then shows a deleted account's bindings as `deleted:serviceAccount:...`) and removes
the artifacts no other endpoint uses.
"""

from __future__ import annotations

import os

from google.api_core import exceptions as gexc

from serving.artifacts import sha256_of
from worker.runtimes.base import ModelSpec, PermanentError, TransientError
from worker.runtimes.gcp.clients import Context

READER_ROLE = "roles/storage.objectViewer"
IAM_ATTEMPTS = 5


def object_name(model: ModelSpec) -> str:
    return f"{model.sha256}.{model.format}"


def model_uri(ctx: Context, model: ModelSpec) -> str:
    return f"gs://{ctx.cfg.artifact_bucket}/{object_name(model)}"


def ensure_artifact(ctx: Context, model: ModelSpec, *, validate_only: bool = False) -> str:
    """Upload the artifact unless the bucket has it; return what was done."""
    bucket = ctx.clients.storage().bucket(ctx.cfg.artifact_bucket)
    name = object_name(model)
    try:
        size = os.path.getsize(model.artifact_path)
    except OSError as exc:
        raise PermanentError(f"The artifact file of {model.name} v{model.version} is missing: {exc}") from exc
    existing = ctx.call(bucket.get_blob, name, what=f"Read gs://{bucket.name}/{name}")
    if existing is not None:
        if existing.size != size:
            raise PermanentError(
                f"gs://{bucket.name}/{name} holds {existing.size} bytes, not the artifact's {size}; "
                "remove the object so the portal can upload it again."
            )
        return f"gs://{bucket.name}/{name} is already there"
    actual = sha256_of(model.artifact_path)
    if actual != model.sha256:
        raise PermanentError(
            f"sha256 mismatch: the artifact file hashes to {actual[:12]}…, the version records "
            f"{model.sha256[:12]}…; the file was changed or damaged"
        )
    if validate_only:
        return f"would upload {size} bytes to gs://{bucket.name}/{name}"
    ctx.call(
        bucket.blob(name).upload_from_filename,
        model.artifact_path,
        content_type="application/octet-stream",
        if_generation_match=0,
        checksum="crc32c",
        what=f"Upload gs://{bucket.name}/{name}",
        accept=(gexc.PreconditionFailed,),  # another worker uploaded it first: same bytes, same name
    )
    return f"uploaded {size} bytes to gs://{bucket.name}/{name}"


def artifact_exists(ctx: Context, model: ModelSpec) -> bool:
    bucket = ctx.clients.storage().bucket(ctx.cfg.artifact_bucket)
    name = object_name(model)
    return ctx.call(bucket.get_blob, name, what=f"Read gs://{bucket.name}/{name}") is not None


def delete_artifact(ctx: Context, model: ModelSpec) -> bool:
    """Remove the artifact's object; True if it was there."""
    if not artifact_exists(ctx, model):
        return False
    bucket = ctx.clients.storage().bucket(ctx.cfg.artifact_bucket)
    name = object_name(model)
    ctx.call(
        bucket.delete_blob, name, what=f"Delete gs://{bucket.name}/{name}", accept=(gexc.NotFound,)
    )  # NotFound: deleted since the read
    return True


def grant_reader(ctx: Context, member: str, *, validate_only: bool = False) -> bool:
    """Let `member` read the bucket's objects; True if the policy had to change."""
    return _change_reader(ctx, member, grant=True, validate_only=validate_only)


def revoke_reader(ctx: Context, member: str, *, validate_only: bool = False) -> bool:
    """Take back `member`'s read access to the bucket; True if the policy had to change."""
    return _change_reader(ctx, member, grant=False, validate_only=validate_only)


def _change_reader(ctx: Context, member: str, *, grant: bool, validate_only: bool) -> bool:
    """Read-modify-write of the bucket's IAM policy so `member` holds the unconditional reader
    binding (`grant`) or does not; True if the policy had to change (or would, when validating)."""
    bucket = ctx.clients.storage().bucket(ctx.cfg.artifact_bucket)
    for _ in range(IAM_ATTEMPTS):
        policy = ctx.call(
            bucket.get_iam_policy, requested_policy_version=3, what=f"Read the IAM policy of {bucket.name}"
        )
        readers = [
            binding
            for binding in policy.bindings
            if binding["role"] == READER_ROLE and not binding.get("condition")
        ]
        if any(member in binding["members"] for binding in readers) == grant:
            return False
        if validate_only:
            return True
        if not grant:
            for binding in readers:
                binding["members"] = set(binding["members"]) - {member}
        elif readers:
            readers[0]["members"] = set(readers[0]["members"]) | {member}
        else:
            policy.bindings.append({"role": READER_ROLE, "members": {member}})
        verb = "Let" if grant else "Stop"
        written = ctx.call(
            bucket.set_iam_policy,
            policy,
            what=f"{verb} {member} read {bucket.name}",
            accept=(gexc.PreconditionFailed,),  # stale etag: re-read and try again
        )
        if written is not None:
            return True
    raise TransientError(f"The IAM policy of {bucket.name} kept changing under us; will try again.")
