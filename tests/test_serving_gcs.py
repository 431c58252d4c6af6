"""The serving container fetches a gs:// artifact from Cloud Storage, verifies it, and serves it.

Real processes over real HTTP: the fake Cloud Storage JSON API (tests/fakes/storage.py) on
loopback, the artifact uploaded to it with the real google-cloud-storage client, and
`python -m serving` started with `SERVING_MODEL_URI=gs://...` and `STORAGE_EMULATOR_HOST`
pointing the client at the fake (which makes it use anonymous credentials: no key file, no
metadata server).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import orjson
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from serving.tests.support import IRIS_FEATURES, IRIS_LABELS, SETOSA, VIRGINICA, Server, write_model
from tests.fakes.storage import StorageFake

BUCKET = "portal-artifacts"


@pytest.fixture(scope="module")
def storage():
    fake = StorageFake((BUCKET,)).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> dict:
    """The iris LogisticRegression as a skops file, and the metadata the portal would give it."""
    import pandas as pd

    iris = load_iris()
    frame = pd.DataFrame(iris.data, columns=IRIS_FEATURES)
    estimator = LogisticRegression(max_iter=1000).fit(frame, iris.target)
    return write_model(tmp_path_factory.mktemp("gcs-model"), "iris", estimator, IRIS_FEATURES, IRIS_LABELS)


@pytest.fixture(scope="module")
def uploaded(storage, model) -> tuple[str, bytes]:
    """The artifact in the bucket, uploaded as the GCP runtime does it (create-only); its object name."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    data = Path(model["SERVING_MODEL_URI"]).read_bytes()
    name = f"models/iris/{hashlib.sha256(data).hexdigest()}.skops"
    client = gcs.Client(
        project="portal-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": storage.endpoint},
    )
    client.bucket(BUCKET).blob(name).upload_from_string(
        data, content_type="application/octet-stream", if_generation_match=0
    )
    assert storage.data[(BUCKET, name)] == data
    return name, data


@pytest.fixture
def servers():
    started: list[Server] = []
    yield started
    for server in started:
        server.terminate()


def serve(servers: list, storage: StorageFake, tmp_path, uri: str, meta: str, wait: float = 0) -> Server:
    env = {
        "SERVING_MODEL_URI": uri,
        "SERVING_MODEL_META": meta,
        "SERVING_MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "STORAGE_EMULATOR_HOST": storage.endpoint,
        "SERVING_DOWNLOAD_WAIT_SECONDS": str(wait),
    }
    server = Server(env, tmp_path / f"server-{len(servers)}.log")
    servers.append(server)
    return server


def refusal(server: Server) -> str:
    """The exit status must be 2; return the one line that says why."""
    assert server.exit_code(timeout=60) == 2, server.output()
    said = [line for line in server.output().splitlines() if "Not starting:" in line]
    assert len(said) == 1 and "Traceback" not in server.output(), server.output()
    return said[0]


def test_a_gs_artifact_is_fetched_verified_and_served(storage, model, uploaded, servers, tmp_path):
    name, data = uploaded
    storage.clear_calls()
    server = serve(servers, storage, tmp_path, f"gs://{BUCKET}/{name}", model["SERVING_MODEL_META"])
    server.wait_ready(timeout=60)

    # It was downloaded with a media GET, into the cache directory, byte for byte.
    assert f"GET /download/storage/v1/b/{BUCKET}/o/{name}" in storage.methods()
    cached = list((tmp_path / "cache").iterdir())
    assert [path.read_bytes() for path in cached] == [data]
    assert f"Artifact {cached[0]} verified (sha256 {hashlib.sha256(data).hexdigest()})" in server.output()

    with httpx.Client(base_url=server.url, timeout=10) as client:
        info = client.get("/v1/model").json()
        assert info["sha256"] == orjson.loads(model["SERVING_MODEL_META"])["sha256"]
        answer = client.post("/predict", json=SETOSA)
        assert answer.status_code == 200
        assert answer.json()["target"] == "setosa"
        assert 0.5 < answer.json()["setosa_probability"] <= 1.0
        batch = client.post("/predict", json={"instances": [SETOSA, VIRGINICA]})
        assert batch.status_code == 200
        assert batch.json() == {"predictions": ["setosa", "virginica"]}


def test_a_wrong_sha256_exits_2_naming_the_mismatch(storage, model, uploaded, servers, tmp_path):
    name, data = uploaded
    wrong = hashlib.sha256(b"another artifact").hexdigest()
    meta = orjson.dumps({**orjson.loads(model["SERVING_MODEL_META"]), "sha256": wrong}).decode()
    storage.clear_calls()
    server = serve(servers, storage, tmp_path, f"gs://{BUCKET}/{name}", meta)

    line = refusal(server)
    assert f"sha256 is {hashlib.sha256(data).hexdigest()}" in line
    assert f"SERVING_MODEL_META says {wrong}" in line
    assert "refusing to serve it" in line
    # It was fetched, and refused before it was loaded: nothing ever listened.
    assert f"GET /download/storage/v1/b/{BUCKET}/o/{name}" in storage.methods()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz")


@pytest.mark.parametrize(
    ("bucket", "name", "reason"),
    [
        (
            BUCKET,
            "models/iris/not-uploaded.skops",
            f"No such object: {BUCKET}/models/iris/not-uploaded.skops",
        ),
        ("no-such-bucket", "iris.skops", "The specified bucket does not exist."),
    ],
)
def test_a_missing_object_exits_2_naming_the_uri(storage, model, servers, tmp_path, bucket, name, reason):
    uri = f"gs://{bucket}/{name}"
    server = serve(servers, storage, tmp_path, uri, model["SERVING_MODEL_META"])

    line = refusal(server)
    assert f"Could not download {uri}: 404" in line
    assert reason in line
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_download_refused_while_the_reader_grant_propagates_is_tried_again(
    storage, model, uploaded, servers, tmp_path
):
    name, _ = uploaded
    storage.clear_calls()
    # Cloud Storage refuses the new account until its grant arrives, then lets it read.
    storage.fail_next(
        2,
        status=403,
        message="ep-iris@p.iam.gserviceaccount.com does not have "
        "storage.objects.get access to the Google Cloud Storage object.",
        route="GET /download",
    )
    server = serve(servers, storage, tmp_path, f"gs://{BUCKET}/{name}", model["SERVING_MODEL_META"], wait=30)
    server.wait_ready(timeout=60)

    downloads = [call for call in storage.methods() if call.startswith("GET /download")]
    assert len(downloads) == 3
    assert server.output().count("a new reader's access can take minutes") == 2
    assert httpx.post(f"{server.url}/predict", json=SETOSA, timeout=10).json()["target"] == "setosa"


def test_a_download_still_refused_after_the_wait_exits_2_saying_so(
    storage, model, uploaded, servers, tmp_path
):
    name, _ = uploaded
    storage.fail_next(100, status=403, message="Forbidden", route="GET /download")
    try:
        server = serve(
            servers, storage, tmp_path, f"gs://{BUCKET}/{name}", model["SERVING_MODEL_META"], wait=2
        )
        line = refusal(server)
    finally:
        storage.clear_failures()
    assert f"Could not download gs://{BUCKET}/{name}: 403" in line and "(still, after 2 s of retries)" in line
