"""The local runtime reads the live revision's log file: newest last, filtered, followed by cursor."""

import time

import httpx
import pytest

from worker.runtimes.base import AccessPolicy
from worker.runtimes.local.logs import read_log_file
from worker.runtimes.logs import LogQuery, LogQueryError
from worker.tests.test_local_runtime import (  # noqa: F401  (fixtures)
    SETOSA,
    deploy,
    deploy_spec,
    iris_model,
    name,
    runtime,
    runtime_dir,
)

LOG = (
    "2026-12-06T03:47:37.120Z INFO serving[41] serving: "
    "Serving iris version 1 on port 18100 with 1 workers.\n"
    '{"time":"2026-12-06T03:47:40.000001Z","severity":"WARNING","message":"401 POST /predict: '
    'Send an API key (0.1 ms, client 127.0.0.1)","status":401,"path":"/predict","revision":"iris-d1"}\n'
    "2026-12-06T03:47:41.500Z ERROR serving[42] serving.app: Unexpected error answering b'POST' b'/predict'\n"
    "Traceback (most recent call last):\n"
    '  File "app.py", line 1, in handle\n'
    "RuntimeError: boom\n"
    '{"time":"2026-12-06T03:47:42.000001Z","severity":"INFO","message":"200 POST /predict (0.2 ms, '
    'client 127.0.0.1)","status":200,"path":"/predict","revision":"iris-d1"}\n'
)


@pytest.fixture
def log_file(tmp_path):
    path = tmp_path / "iris-d1.log"
    path.write_text(LOG)
    return path


def messages(page):
    return [entry.message.splitlines()[0] for entry in page.entries]


def test_a_tail_gives_every_entry_newest_last_with_its_level_and_time(log_file):
    page = read_log_file(log_file, "iris-d1", LogQuery())
    assert [entry.level for entry in page.entries] == ["INFO", "WARNING", "ERROR", "INFO"]
    assert page.entries[0].time == "2026-12-06T03:47:37.120Z"
    assert (
        page.entries[0].message == "serving[41] serving: Serving iris version 1 on port 18100 with 1 workers."
    )
    assert page.entries[1].fields == {"status": 401, "path": "/predict", "revision": "iris-d1"}
    assert page.entries[2].message.endswith(
        'Traceback (most recent call last):\n  File "app.py", line 1, in handle\nRuntimeError: boom'
    )
    assert page.cursor == f"iris-d1:{len(LOG.encode())}"
    assert page.more is False


def test_level_text_and_limit_narrow_a_tail_to_its_newest_matches(log_file):
    assert [e.level for e in read_log_file(log_file, "iris-d1", LogQuery(level="WARNING")).entries] == [
        "WARNING",
        "ERROR",
    ]
    assert messages(read_log_file(log_file, "iris-d1", LogQuery(text="post /PREDICT"))) == [
        "401 POST /predict: Send an API key (0.1 ms, client 127.0.0.1)",
        "200 POST /predict (0.2 ms, client 127.0.0.1)",
    ]
    assert messages(read_log_file(log_file, "iris-d1", LogQuery(text="boom"))) == [
        "serving[42] serving.app: Unexpected error answering b'POST' b'/predict'"
    ]
    page = read_log_file(log_file, "iris-d1", LogQuery(limit=2))
    assert [entry.level for entry in page.entries] == ["ERROR", "INFO"]
    assert page.more is True


def test_following_from_a_cursor_gives_only_complete_lines_written_since(log_file):
    first = read_log_file(log_file, "iris-d1", LogQuery())
    assert read_log_file(log_file, "iris-d1", LogQuery(after=first.cursor)).entries == ()
    with open(log_file, "a") as file:
        file.write('{"time":"2026-12-06T03:48:00Z","severity":"ERROR","message":"500 POST /predict"}\n')
        file.write('{"time":"2026-12-06T03:48:01Z","severity":"WARNING","message":"half a li')
    later = read_log_file(log_file, "iris-d1", LogQuery(after=first.cursor))
    assert messages(later) == ["500 POST /predict"]
    assert later.more is True  # the half-written line waits
    with open(log_file, "a") as file:
        file.write('ne"}\n')
    last = read_log_file(log_file, "iris-d1", LogQuery(after=later.cursor))
    assert messages(last) == ["half a line"]
    assert (last.more, read_log_file(log_file, "iris-d1", LogQuery(after=last.cursor)).entries) == (False, ())


def test_a_follow_past_its_limit_resumes_where_it_stopped(log_file):
    start = read_log_file(log_file, "iris-d1", LogQuery()).cursor
    with open(log_file, "a") as file:
        for number in range(5):
            file.write(
                f'{{"time":"2026-12-06T03:49:0{number}Z","severity":"INFO","message":"line {number}"}}\n'
            )
    seen, cursor = [], start
    for _ in range(3):
        page = read_log_file(log_file, "iris-d1", LogQuery(limit=2, after=cursor))
        seen += messages(page)
        cursor = page.cursor
    assert seen == [f"line {number}" for number in range(5)]
    assert page.more is False


def test_a_cursor_of_another_revision_starts_the_live_ones_log_over(log_file):
    page = read_log_file(log_file, "iris-d1", LogQuery(after="iris-d0:999999"))
    assert len(page.entries) == 4
    with pytest.raises(LogQueryError, match="the cursor is not one this log gave"):
        read_log_file(log_file, "iris-d1", LogQuery(after="nonsense"))


def test_log_lines_of_earlier_versions_in_local_time_are_read_in_utc(tmp_path):
    path = tmp_path / "iris-d2.log"
    path.write_text("2026-12-06 03:47:37,120 WARNING serving[9] serving: Old format.\n")
    [entry] = read_log_file(path, "iris-d2", LogQuery()).entries
    assert (entry.level, entry.message) == ("WARNING", "serving[9] serving: Old format.")
    assert entry.time.endswith(".120Z")


def test_bad_queries_are_refused_with_a_reason():
    with pytest.raises(LogQueryError, match="level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"):
        LogQuery(level="LOUD")
    with pytest.raises(LogQueryError, match="limit must be between 1 and 500"):
        LogQuery(limit=0)
    with pytest.raises(LogQueryError, match="longer than 200 characters"):
        LogQuery(text="x" * 201)


def test_the_runtime_reads_the_live_revisions_log_with_its_refusals(runtime, name, iris_model):  # noqa: F811
    live = deploy(runtime, deploy_spec(name, iris_model, 1, access=AccessPolicy(mode="api_key")))
    url = live["url"]
    assert httpx.post(f"{url}/predict", json=SETOSA, timeout=10).status_code == 401

    def refusals(**query):
        deadline = time.monotonic() + 10
        while True:  # the serving process writes its line just after it answers
            page = runtime.read_log(name, live, LogQuery(level="WARNING", **query))
            if page.entries or time.monotonic() > deadline:
                return page
            time.sleep(0.05)

    page = refusals()
    assert page.revision == f"{name}-d1"
    [refused] = page.entries
    assert refused.fields["status"] == 401 and refused.fields["revision"] == f"{name}-d1"
    assert refused.message.startswith("401 POST /predict: ")
    assert refused.fields["reason"] in refused.message
    startup = runtime.read_log(name, live, LogQuery(text="Serving iris version 1")).entries
    assert startup and startup[0].level == "INFO"

    httpx.get(f"{url}/nowhere", timeout=10)
    later = refusals(after=page.cursor)
    assert [entry.fields["status"] for entry in later.entries] == [404]
    assert runtime.read_log(f"{name}-none", None, LogQuery()).revision is None
