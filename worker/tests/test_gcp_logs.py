"""The GCP runtime reads the live revision's log from Cloud Logging, on the fake Logging server.

The official google-cloud-logging client talks gRPC to tests/fakes/cloud_logging.py; each test
asserts the request Google would have received and what the panel gets back. The fake clock's wall
time is 2027-01-15T08:00:00Z.
"""

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.fixtures import PROJECT
from tests.fakes.grpc_server import quota_error
from worker.runtimes.base import PermanentError, TransientError
from worker.runtimes.logs import LogQuery

LIVE = {"revision": "iris-prod-d7", "url": "https://gw.example"}
BASE = (
    'resource.type = "cloud_run_revision" AND resource.labels.service_name = "iris-prod" '
    'AND resource.labels.revision_name = "iris-prod-d7"'
)


@pytest.fixture
def entries(fakes):
    write = fakes.logging.write
    write(
        service="iris-prod",
        revision="iris-prod-d7",
        timestamp="2027-01-15T07:50:00.100Z",
        insert_id="a1",
        severity="INFO",
        json={
            "message": "Serving iris version 3 on port 8080 with 1 workers.",
            "logger": "serving",
            "pid": 1,
        },
    )
    write(
        service="iris-prod",
        revision="iris-prod-d7",
        timestamp="2027-01-15T07:55:00.123456789Z",
        insert_id="a2",
        severity="WARNING",
        json={
            "message": "403 POST /predict: address not allowed (0.2 ms, client 10.0.0.7)",
            "status": 403,
            "path": "/predict",
            "reason": "address not allowed",
            "latency_ms": 0.2,
            "revision": "iris-prod-d7",
        },
    )
    write(
        service="iris-prod",
        revision="iris-prod-d7",
        timestamp="2027-01-15T07:56:00Z",
        insert_id="a3",
        severity="ERROR",
        text="Traceback (most recent call last): boom\n",
    )
    write(
        service="iris-prod",
        revision="iris-prod-d7",
        timestamp="2027-01-15T07:57:00Z",
        insert_id="a4",
        severity="ERROR",
        http_request={
            "request_method": "POST",
            "request_url": "https://iris-prod-abc.a.run.app/predict",
            "status": 503,
            "latency": {"seconds": 0, "nanos": 12_000_000},
            "remote_ip": "10.0.0.9",
        },
    )
    # Not this revision's, not this service's, and older than a tail looks.
    write(
        service="iris-prod",
        revision="iris-prod-d6",
        timestamp="2027-01-15T07:58:00Z",
        insert_id="b1",
        text="old",
    )
    write(
        service="churn",
        revision="iris-prod-d7",
        timestamp="2027-01-15T07:58:00Z",
        insert_id="c1",
        text="other",
    )
    write(
        service="iris-prod",
        revision="iris-prod-d7",
        timestamp="2027-01-13T00:00:00Z",
        insert_id="a0",
        text="2 days",
    )


def test_a_tail_reads_the_revisions_newest_entries_with_the_documented_filter(gcp, fakes, entries):
    page = gcp.read_log("iris-prod", LIVE, LogQuery(limit=10))

    [request] = fakes.logging.requests("ListLogEntries")
    assert list(request.resource_names) == [f"projects/{PROJECT}"]
    assert request.filter == BASE + ' AND timestamp >= "2027-01-14T08:00:00.000000Z"'
    assert (request.order_by, request.page_size) == ("timestamp desc", 11)
    assert page.revision == "iris-prod-d7"
    assert [(entry.level, entry.message) for entry in page.entries] == [
        ("INFO", "Serving iris version 3 on port 8080 with 1 workers."),
        ("WARNING", "403 POST /predict: address not allowed (0.2 ms, client 10.0.0.7)"),
        ("ERROR", "Traceback (most recent call last): boom"),
        ("ERROR", "503 POST https://iris-prod-abc.a.run.app/predict (12.0 ms, client 10.0.0.9)"),
    ]
    assert page.entries[1].fields == {
        "status": 403,
        "path": "/predict",
        "reason": "address not allowed",
        "latency_ms": 0.2,
        "revision": "iris-prod-d7",
    }
    assert page.entries[1].time == "2027-01-15T07:55:00.123456789Z"
    assert page.cursor == "iris-prod-d7|2027-01-15T07:57:00.000000Z|a4"
    assert page.more is False


def test_level_and_text_become_severity_and_payload_clauses(gcp, fakes, entries):
    page = gcp.read_log("iris-prod", LIVE, LogQuery(level="WARNING", text="Address NOT"))
    [request] = fakes.logging.requests("ListLogEntries")
    assert request.filter == (
        BASE + " AND severity >= WARNING"
        ' AND (textPayload : "Address NOT" OR jsonPayload.message : "Address NOT")'
        ' AND timestamp >= "2027-01-14T08:00:00.000000Z"'
    )
    assert [entry.fields.get("status") for entry in page.entries] == [403]
    errors = gcp.read_log("iris-prod", LIVE, LogQuery(level="ERROR"))
    assert [entry.level for entry in errors.entries] == ["ERROR", "ERROR"]
    quoted = gcp.read_log("iris-prod", LIVE, LogQuery(text='say "hi" \\ there'))
    assert quoted.entries == ()
    assert '(textPayload : "say \\"hi\\" \\\\ there"' in fakes.logging.requests("ListLogEntries")[-1].filter


def test_a_limited_tail_keeps_the_newest_and_says_there_are_more(gcp, entries):
    page = gcp.read_log("iris-prod", LIVE, LogQuery(limit=2))
    assert [entry.level for entry in page.entries] == ["ERROR", "ERROR"]
    assert page.more is True


def test_following_reads_only_entries_after_the_cursor_oldest_first(gcp, fakes, entries):
    cursor = gcp.read_log("iris-prod", LIVE, LogQuery()).cursor
    assert gcp.read_log("iris-prod", LIVE, LogQuery(after=cursor)).entries == ()
    fakes.logging.write(
        service="iris-prod",
        revision="iris-prod-d7",
        timestamp="2027-01-15T07:57:00Z",
        insert_id="a5",
        text="same time",
    )
    fakes.logging.write(
        service="iris-prod",
        revision="iris-prod-d7",
        timestamp="2027-01-15T07:59:00Z",
        insert_id="a6",
        text="later",
    )
    fakes.logging.clear_calls()
    page = gcp.read_log("iris-prod", LIVE, LogQuery(after=cursor, limit=1))
    [request] = fakes.logging.requests("ListLogEntries")
    assert request.filter == (
        BASE + ' AND (timestamp > "2027-01-15T07:57:00.000000Z" OR '
        '(timestamp = "2027-01-15T07:57:00.000000Z" AND insertId > "a4"))'
    )
    assert (request.order_by, request.page_size) == ("timestamp asc", 2)
    assert [entry.message for entry in page.entries] == ["same time"]
    assert page.more is True
    rest = gcp.read_log("iris-prod", LIVE, LogQuery(after=page.cursor))
    assert [entry.message for entry in rest.entries] == ["later"]
    assert rest.cursor == "iris-prod-d7|2027-01-15T07:59:00.000000Z|a6"
    # A cursor of an earlier revision starts the live one's log over.
    assert (
        len(gcp.read_log("iris-prod", LIVE, LogQuery(after="iris-prod-d6|2027-01-15T07:58:00Z|b1")).entries)
        == 6
    )


def test_an_empty_log_gives_a_cursor_that_finds_what_comes_later(gcp, fakes):
    page = gcp.read_log("iris-prod", LIVE, LogQuery())
    assert (page.entries, page.cursor) == ((), "iris-prod-d7|2027-01-14T08:00:00.000000Z|")
    fakes.logging.write(
        service="iris-prod",
        revision="iris-prod-d7",
        timestamp="2027-01-15T08:00:01Z",
        insert_id="x",
        text="first",
    )
    assert [
        entry.message for entry in gcp.read_log("iris-prod", LIVE, LogQuery(after=page.cursor)).entries
    ] == ["first"]
    assert gcp.read_log("iris-prod", None, LogQuery()).revision is None


def test_a_busy_logging_api_is_retried_and_a_spent_quota_is_transient(gcp, fakes, entries):
    fakes.logging.fail_next(1, grpc.StatusCode.UNAVAILABLE)
    assert len(gcp.read_log("iris-prod", LIVE, LogQuery()).entries) == 4
    assert fakes.logging.methods() == ["ListLogEntries", "ListLogEntries"]
    fakes.logging.fail_next(
        5, error=quota_error("ReadRequestsPerMinutePerProject", metric="logging.googleapis.com/read_requests")
    )
    with pytest.raises(TransientError):
        gcp.read_log("iris-prod", LIVE, LogQuery())


def test_a_project_the_worker_may_not_read_is_a_permanent_error(gcp, fakes, entries):
    fakes.logging.project_id = "someone-else"
    try:
        with pytest.raises(PermanentError, match="does not have permission to read the logs"):
            gcp.read_log("iris-prod", LIVE, LogQuery())
    finally:
        fakes.logging.project_id = PROJECT


def test_a_project_without_the_logging_api_says_which_api_to_enable(gcp, fakes, entries):
    fakes.project.disabled = {"logging.googleapis.com"}
    with pytest.raises(PermanentError, match="logging.googleapis.com"):
        gcp.read_log("iris-prod", LIVE, LogQuery())


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("jsonPayload.status = 403", "Unsupported field in filter: jsonPayload.status"),
        ("severity >= LOUD", "Invalid severity value: 'LOUD'"),
        ('timestamp >= "yesterday"', "Invalid timestamp value: 'yesterday'"),
        ('resource.type = "cloud_run_revision" AND (severity = ERROR', "unexpected end of filter"),
        ('resource.type == "x"', "Unparseable filter: syntax error at line 1, column 16, token '='"),
    ],
)
def test_the_fake_refuses_filters_it_does_not_read_as_google_does(fakes, query, message):
    from google.api_core.client_options import ClientOptions  # noqa: F401

    channel = grpc.insecure_channel(f"127.0.0.1:{fakes.logging.port}")
    client = LoggingServiceV2Client(
        transport=LoggingServiceV2Client.get_transport_class("grpc")(channel=channel)
    )
    with pytest.raises(gexc.InvalidArgument, match=message):
        list(client.list_log_entries(request={"resource_names": [f"projects/{PROJECT}"], "filter": query}))


def test_the_fake_reads_or_tighter_than_and_as_google_documents(fakes, entries):
    channel = grpc.insecure_channel(f"127.0.0.1:{fakes.logging.port}")
    client = LoggingServiceV2Client(
        transport=LoggingServiceV2Client.get_transport_class("grpc")(channel=channel)
    )
    # "a AND b OR c" is "a AND (b OR c)": only the churn service's entry, not every ERROR.
    found = client.list_log_entries(
        request={
            "resource_names": [f"projects/{PROJECT}"],
            "filter": 'resource.labels.service_name = "churn" AND severity = ERROR OR textPayload : "OTHER"',
        }
    )
    assert [entry.insert_id for entry in found] == ["c1"]
