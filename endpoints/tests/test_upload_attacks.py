"""Uploads written as attacks: each ends in a 4xx that says why, nothing stored, no code run here.

The crafted skops files call a function through a node skops reconstructs by calling its type
(the tree node of a decision tree); `numpy.testing._private.utils.runstring` execs its argument,
and its name starts with "numpy.", a package whose types skops' users commonly trust.
"""

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import skops.io as sio
from django.core.files.uploadedfile import SimpleUploadedFile
from sklearn.datasets import load_iris
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from endpoints.models import AuditEvent, ModelVersion
from endpoints.tests.test_api_models import api, upload

RUNSTRING = "numpy.testing._private.utils.runstring"
TREE = "sklearn.tree._tree.Tree"
X, Y = load_iris(return_X_y=True)


@pytest.fixture
def iris_model(admin):
    from endpoints.services.versions import ml_model_create

    return ml_model_create(user=admin, name="iris")


def nothing_stored():
    return (
        not ModelVersion.objects.exists()
        and not AuditEvent.objects.filter(action="model_version.register").exists()
    )


def node_of(value) -> dict:
    """The skops JSON node of a plain value, as skops itself writes it."""
    schema = json.loads(zipfile.ZipFile(io.BytesIO(sio.dumps(value))).read("schema.json"))
    schema.pop("protocol", None)
    return schema


def with_tree_replaced(estimator, code: str) -> bytes:
    """`estimator`'s skops file with its first tree node turned into a call of runstring(code, {})."""
    source = zipfile.ZipFile(io.BytesIO(sio.dumps(estimator)))
    schema = json.loads(source.read("schema.json"))

    def replace(node) -> bool:
        if isinstance(node, dict):
            if node.get("__loader__") == "TreeNode":
                module, _, name = RUNSTRING.rpartition(".")
                node.update({"__module__": module, "__class__": name, "content": node_of({})})
                node["__reduce__"] = {"args": node_of((code, {}))}
                return True
            return any(replace(value) for value in node.values())
        if isinstance(node, list):
            return any(replace(value) for value in node)
        return False

    assert replace(schema), "no tree node to replace"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            data = json.dumps(schema) if name == "schema.json" else source.read(name)
            target.writestr(name, data)
    return out.getvalue()


def marker_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


def test_a_function_named_like_a_numpy_type_is_refused_without_trust(admin, iris_model, tmp_path):
    marker = tmp_path / "ran"
    data = with_tree_replaced(DecisionTreeClassifier().fit(X, Y), marker_code(marker))
    assert RUNSTRING in sio.get_untrusted_types(data=data)
    response = upload(api(admin), iris_model, data, "tree.skops")
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "trusted_types"
    assert f"{RUNSTRING} (is a function, not a class)" in body["detail"]
    assert not marker.exists() and nothing_stored()


def test_a_function_is_refused_even_when_the_admin_trusts_it(admin, iris_model, tmp_path):
    marker = tmp_path / "ran"
    data = with_tree_replaced(DecisionTreeClassifier().fit(X, Y), marker_code(marker))
    response = upload(api(admin), iris_model, data, "tree.skops", trusted_types=json.dumps([RUNSTRING, TREE]))
    assert response.status_code == 422
    assert "It is refused even when trusted" in response.json()["detail"]
    assert not marker.exists() and nothing_stored()


def test_a_function_nested_inside_a_pipeline_step_is_refused(admin, iris_model, tmp_path):
    marker = tmp_path / "ran"
    pipeline = make_pipeline(StandardScaler(), DecisionTreeClassifier()).fit(X, Y)
    response = upload(api(admin), iris_model, with_tree_replaced(pipeline, marker_code(marker)), "p.skops")
    assert response.status_code == 422
    assert RUNSTRING in response.json()["detail"]
    assert not marker.exists() and nothing_stored()


def test_types_outside_the_default_trust_are_listed_and_load_once_accepted_by_name(admin, iris_model):
    data = sio.dumps(DecisionTreeClassifier(random_state=0).fit(X, Y))
    refused = upload(api(admin), iris_model, data, "tree.skops", input_schema=json.dumps(list("abcd")))
    assert refused.status_code == 422
    assert refused.json()["untrusted_types"] == [TREE]
    assert nothing_stored()
    accepted = upload(
        api(admin),
        iris_model,
        data,
        "tree.skops",
        input_schema=json.dumps(list("abcd")),
        trusted_types=TREE,
    )
    assert accepted.status_code == 201, accepted.json()
    assert accepted.json()["trusted_types"] == [TREE]
    event = AuditEvent.objects.get(action="model_version.register")
    assert event.details["trusted_types"] == [TREE]


def test_trust_is_exact_a_prefix_of_the_name_is_not_enough(admin, iris_model):
    data = sio.dumps(DecisionTreeClassifier().fit(X, Y))
    response = upload(
        api(admin),
        iris_model,
        data,
        "tree.skops",
        input_schema=json.dumps(list("abcd")),
        trusted_types="sklearn.",
    )
    assert response.status_code == 422
    assert response.json()["untrusted_types"] == [TREE]
    assert nothing_stored()


def test_a_zip_bomb_is_refused_before_it_is_expanded(admin, iris_model, settings):
    settings.MODEL_EXPANDED_MAX_BYTES = 10 * 1024 * 1024
    source = zipfile.ZipFile(io.BytesIO(sio.dumps(DecisionTreeClassifier().fit(X, Y))))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as bomb:
        for name in source.namelist():
            bomb.writestr(name, source.read(name))
        bomb.writestr("padding.npy", bytes(64 * 1024 * 1024))  # 64 MiB of zeros, some 64 KiB packed
    assert len(out.getvalue()) < 1024 * 1024
    response = upload(api(admin), iris_model, out.getvalue(), "bomb.skops")
    assert response.status_code == 422
    assert "would expand to" in response.json()["detail"]
    assert "the limit is 10,485,760 bytes" in response.json()["detail"]
    assert nothing_stored()


class Runs:
    """A pickle that runs `code` when it is loaded."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def pickled(code: str) -> bytes:
    return pickle.dumps(Runs(code))


def test_a_pickle_without_trust_is_refused_without_being_opened(admin, iris_model, tmp_path):
    marker = tmp_path / "ran"
    response = upload(api(admin), iris_model, pickled(marker_code(marker)), "model.pkl")
    assert response.status_code == 422
    assert "runs code when it is loaded" in response.json()["detail"]
    assert not marker.exists() and nothing_stored()


def test_a_trusted_pickle_runs_in_a_sandbox_without_secrets_or_network(
    admin, iris_model, tmp_path, monkeypatch, settings
):
    monkeypatch.setenv("SECRET_KEY", "a-secret-the-sandbox-must-not-see")
    monkeypatch.setenv("DATABASE_URL", "postgres://user:password@db/portal")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/secrets/adc.json")
    from endpoints.sandbox import client

    client.stop()  # a fresh server, started from this environment
    secret = Path(settings.MEDIA_ROOT) / "secret_key"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("a secret file in the portal's data folder")
    seen = tmp_path / "seen.json"
    code = f"""
import json, os, socket
try:
    socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    network = "reached the database port"
except OSError as exc:
    network = str(exc)
try:
    files = open({str(secret)!r}).read()
except OSError as exc:
    files = str(exc)
json.dump({{"env": dict(os.environ), "pid": os.getpid(), "cwd": os.getcwd(), "network": network,
           "files": files}}, open({str(seen)!r}, "w"))
"""
    response = upload(api(admin), iris_model, pickled(code), "model.pkl", trust_code="true")
    assert response.status_code == 422
    assert "not a fitted scikit-learn estimator" in response.json()["detail"]
    assert nothing_stored()
    report = json.loads(seen.read_text())
    assert report["pid"] != os.getpid()
    for name in ("SECRET_KEY", "DATABASE_URL", "GOOGLE_APPLICATION_CREDENTIALS", "CELERY_BROKER_URL"):
        assert name not in report["env"]
    assert Path(report["cwd"]).parent == Path(client.root())
    assert not Path(report["cwd"]).exists()  # the job's folder is thrown away
    assert set(report["env"]) == {"PATH", "LANG", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "HOME", "TMPDIR"}
    assert "unreachable" in report["network"]
    assert "No such file or directory" in report["files"]


@pytest.mark.parametrize(
    ("setting", "value", "code", "said"),
    [
        ("SANDBOX_MEMORY_BYTES", 1536 * 1024 * 1024, "bytearray(8 * 1024 ** 3)", "memory limit"),
        ("SANDBOX_CPU_SECONDS", 1, "while True: pass", "CPU time limit"),
        ("SANDBOX_WALL_SECONDS", 2, "import time; time.sleep(60)", "wall-time limit"),
        (
            "SANDBOX_FILE_BYTES",
            1024 * 1024,
            "open('big', 'wb').write(bytes(8 * 1024 * 1024))",
            "file size limit",
        ),
    ],
)
def test_a_trusted_pickle_that_hits_a_limit_gets_a_422_naming_it(
    admin, iris_model, settings, setting, value, code, said
):
    setattr(settings, setting, value)
    response = upload(api(admin), iris_model, pickled(code), "model.pkl", trust_code="true")
    assert response.status_code == 422, response.json()
    assert f"Loading the model hit the sandbox's {said} ({setting})" in response.json()["detail"]
    assert nothing_stored()


def test_a_crash_while_loading_gets_a_422_that_says_so(admin, iris_model):
    response = upload(api(admin), iris_model, pickled("import os; os.abort()"), "m.pkl", trust_code="true")
    assert response.status_code == 422
    assert "crashed (SIGABRT)" in response.json()["detail"]
    assert nothing_stored()


class StreamedBody(io.RawIOBase):
    """A multipart body made as it is read, noting how much of the upload is on disk at each read."""

    BOUNDARY = "bound"

    def __init__(self, file_bytes: int, temp_dir: Path, *, fail_past: int | None = None):
        head = (
            f'--{self.BOUNDARY}\r\nContent-Disposition: form-data; name="artifact"; filename="big.skops"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{self.BOUNDARY}--\r\n".encode()
        self.parts = [head, file_bytes, tail]
        self.length = len(head) + file_bytes + len(tail)
        self.position = 0
        self.temp_dir = temp_dir
        self.fail_past = fail_past
        self.most_on_disk = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self._read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _read(self, size):
        on_disk = sum(path.stat().st_size for path in self.temp_dir.iterdir())
        self.most_on_disk = max(self.most_on_disk, on_disk)
        if self.fail_past is not None and self.position > self.fail_past:
            raise AssertionError(f"the server read {self.position:,} bytes of a body it should have refused")
        head, middle, tail = self.parts
        out = bytearray()
        while size > 0 and self.position < self.length:
            offset = self.position
            if offset < len(head):
                piece = head[offset : offset + size]
            elif offset < len(head) + middle:
                piece = b"\x00" * min(size, len(head) + middle - offset)
            else:
                start = offset - len(head) - middle
                piece = tail[start : start + size]
            out += piece
            self.position += len(piece)
            size -= len(piece)
        return bytes(out)


def post_streamed(client, ml_model, body: StreamedBody, declared: int | None = None):
    return client.generic(
        "POST",
        f"/api/v1/models/{ml_model.pk}/versions/",
        b"",
        content_type=f"multipart/form-data; boundary={StreamedBody.BOUNDARY}",
        **{"wsgi.input": io.BufferedReader(body, 64 * 1024), "CONTENT_LENGTH": str(declared or body.length)},
    )


def test_an_upload_past_the_limit_is_dropped_while_it_streams(admin, iris_model, settings, tmp_path):
    settings.MODEL_UPLOAD_MAX_BYTES = 1024 * 1024
    settings.FILE_UPLOAD_TEMP_DIR = os.fspath(tmp_path)
    body = StreamedBody(1024 * 1024 + 512 * 1024, tmp_path)  # within what the request may say it holds
    response = post_streamed(api(admin), iris_model, body)
    assert response.status_code == 413
    assert response.json() == {
        "detail": "The file is larger than 1,048,576 bytes, the most a model file may be.",
        "field": "artifact",
        "code": "too_large",
    }
    assert 0 < body.most_on_disk <= 1024 * 1024
    assert list(tmp_path.iterdir()) == [] and nothing_stored()


def test_a_body_that_says_it_is_too_large_is_refused_before_its_file_is_read(
    admin, iris_model, settings, tmp_path
):
    settings.MODEL_UPLOAD_MAX_BYTES = 1024 * 1024
    settings.FILE_UPLOAD_TEMP_DIR = os.fspath(tmp_path)
    body = StreamedBody(4 * 1024**3, tmp_path, fail_past=256 * 1024)
    response = post_streamed(api(admin), iris_model, body)
    assert response.status_code == 413
    assert response.json()["detail"].startswith(f"The request is {body.length:,} bytes")
    assert body.most_on_disk == 0 and nothing_stored()


def test_the_dashboard_says_why_an_upload_past_the_limit_was_dropped(
    admin, iris_model, settings, tmp_path, client
):
    settings.MODEL_UPLOAD_MAX_BYTES = 1024 * 1024
    client.force_login(admin)
    response = client.post(
        f"/models/{iris_model.name}/upload/",
        {"artifact": io.BytesIO(bytes(3 * 1024 * 1024))},
    )
    assert response.status_code == 400
    assert "a model file may be at most 1,048,576." in response.content.decode()
    assert nothing_stored()


def test_the_dashboard_lists_the_types_to_review_and_registers_once_they_are_accepted(
    admin, iris_model, client
):
    data = sio.dumps(DecisionTreeClassifier(random_state=0).fit(X, Y))
    client.force_login(admin)
    url = f"/models/{iris_model.name}/upload/"
    schema = json.dumps(list("abcd"))
    refused = client.post(url, {"artifact": SimpleUploadedFile("t.skops", data), "input_schema": schema})
    assert refused.status_code == 400
    page = refused.content.decode()
    assert f'id="id_trusted_types">\n{TREE}</textarea>' in page
    assert "Review the trusted types below, then choose the file again." in page
    assert nothing_stored()
    accepted = client.post(
        url, {"artifact": SimpleUploadedFile("t.skops", data), "input_schema": schema, "trusted_types": TREE}
    )
    assert accepted.status_code == 302
    assert ModelVersion.objects.get().trusted_types == [TREE]


def test_the_one_function_scikit_learn_keeps_loads_only_when_trusted_by_name():
    """check_array, kept by histogram gradient boosting with native categories, passes the
    function refusal but still needs the admin's trust; any other function is still refused."""
    from endpoints.artifacts import ArtifactError, check_trust

    check_array = "sklearn.utils.validation.check_array"
    check_trust([check_array], [check_array])
    with pytest.raises(ArtifactError, match="outside skops' default trust"):
        check_trust([check_array], [])
    with pytest.raises(ArtifactError, match="refused even when trusted"):
        check_trust([check_array, "sklearn.utils.validation.column_or_1d"], [check_array])
