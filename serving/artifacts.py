"""Fetch the model artifact to a local file and verify its sha256 before anything loads it."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from serving.config import ConfigError

log = logging.getLogger("serving")


class ArtifactError(Exception):
    """The artifact cannot be fetched, or is not the one the metadata describes."""


def local_path(uri: str, cache_dir: str | None = None, wait: float = 0.0) -> Path:
    """Return a local path holding the artifact named by `uri` (a path, file:// or gs:// URL);
    a gs:// download refused (403) or not found (404) is tried again for up to `wait` seconds."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri)
        if not path.is_file():
            raise ArtifactError(f"The model artifact {uri} does not exist or is not a file.")
        return path
    if parsed.scheme == "gs":
        return _download_gcs(parsed.netloc, parsed.path.lstrip("/"), cache_dir, wait)
    raise ConfigError(
        f"SERVING_MODEL_URI scheme {parsed.scheme!r} is not supported: use a path, file:// or gs://."
    )


def _download_gcs(bucket: str, name: str, cache_dir: str | None, wait: float) -> Path:
    """Download the object; 403 and 404 are tried again with backoff for `wait` seconds, since the
    reader grant of a service account made moments ago takes minutes to reach Cloud Storage."""
    # Imported here: the library is only needed (and only installed) where artifacts live in GCS.
    try:
        from google.api_core import exceptions as gexc
        from google.cloud import storage
    except ImportError:
        raise ConfigError(
            "SERVING_MODEL_URI is a gs:// URL but google-cloud-storage is not installed in this image."
        ) from None
    directory = Path(cache_dir or tempfile.gettempdir())
    directory.mkdir(parents=True, exist_ok=True)
    # Named by a digest of the whole URI, so objects "a/b" and "a_b" never share a cache file.
    uri_digest = hashlib.sha256(f"{bucket}/{name}".encode()).hexdigest()[:16]
    target = directory / f"{uri_digest}-{name.rsplit('/', 1)[-1]}"
    blob = storage.Client().bucket(bucket).blob(name)
    deadline, delay = time.monotonic() + wait, 1.0
    while True:
        try:
            blob.download_to_filename(str(target))
            return target
        except (gexc.Forbidden, gexc.NotFound) as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                waited = f" (still, after {wait:.0f} s of retries)" if wait else ""
                raise ArtifactError(f"Could not download gs://{bucket}/{name}: {exc}{waited}") from None
            log.warning(
                "Could not download gs://%s/%s yet (%s); a new reader's access can take minutes to "
                "reach Cloud Storage: trying again in %.0f s.",
                bucket,
                name,
                exc.code,
                min(delay, left),
            )
            time.sleep(min(delay, left))
            delay = min(delay * 2, 30.0)
        except Exception as exc:
            raise ArtifactError(f"Could not download gs://{bucket}/{name}: {exc}") from None


def file_digest(path: Path | str) -> tuple[str, int]:
    """The file's sha256 (hex) and size, read in 1 MiB chunks: the one streamed digest of the tree."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def sha256_of(path: Path | str) -> str:
    return file_digest(path)[0]


def verify(path: Path, expected: str) -> None:
    """Raise ArtifactError unless the file's sha256 is `expected`."""
    actual = sha256_of(path)
    if actual != expected.lower():
        raise ArtifactError(
            f"The artifact's sha256 is {actual} but SERVING_MODEL_META says {expected}: refusing to serve it."
        )


def fetch_verified(uri: str, expected_sha256: str, cache_dir: str | None = None, wait: float = 0.0) -> Path:
    path = local_path(uri, cache_dir, wait)
    verify(path, expected_sha256)
    return path
