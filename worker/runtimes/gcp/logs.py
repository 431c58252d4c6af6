"""Read a Cloud Run revision's log from Cloud Logging (`entries.list`), for the log panel.

The filter is the one Google documents for a Cloud Run revision's logs, narrowed as asked:

    resource.type = "cloud_run_revision"
    AND resource.labels.service_name = "iris"
    AND resource.labels.revision_name = "iris-d7"
    AND severity >= WARNING                                        (a level)
    AND (textPayload : "403" OR jsonPayload.message : "403")       (a text; `:` matches a part,
                                                                    ignoring case)
    AND timestamp >= "2026-12-05T03:47:37Z"                       (a tail: the last LOOKBACK,
                                                                    newest first, then reversed)
    AND (timestamp > "<t>" OR (timestamp = "<t>" AND insertId > "<id>"))   (a follow, oldest
                                                                    first: Google orders entries
                                                                    of one timestamp by insertId)

The serving process's lines are JSON on Cloud Run (serving/request_log.py), so Cloud Logging keeps
their severity, and the request lines' fields (status, path, reason, ...) come back from
`jsonPayload`. Cloud Run's own request log (`httpRequest`, no payload) shows as "503 POST <url>".
A cursor is `<revision>|<timestamp>|<insertId>` of the newest entry read.

Cloud Logging allows 60 `entries.list` calls a minute per project, so the panel polls this runtime
less often (`GcpRuntime.log_poll_seconds`) and the portal caches pages briefly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.runtimes.gcp import run
from worker.runtimes.gcp.clients import Context
from worker.runtimes.logs import LEVELS, LogEntry, LogPage, LogQuery, LogQueryError, level_from_severity

#: How far back a tail looks (a revision's older lines are in the Logs Explorer).
LOOKBACK = timedelta(days=1)
SEVERITIES = {0: "DEFAULT", 100: "DEBUG", 200: "INFO", 300: "NOTICE", 400: "WARNING", 500: "ERROR"}
SEVERITIES.update({600: "CRITICAL", 700: "ALERT", 800: "EMERGENCY"})
PAYLOAD_KEYS = ("message", "severity", "time")


def quoted(text: str) -> str:
    """`text` as a string of the Logging query language."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_cursor(cursor: str) -> tuple[str, str, str]:
    parts = cursor.split("|")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise LogQueryError("the cursor is not one this log gave")
    return parts[0], parts[1], parts[2]


def log_filter(service: str, revision: str, query: LogQuery, *, since: str = "", after=None) -> str:
    """The Logging query language filter for `query` on the revision (see the module's docstring)."""
    clauses = [
        'resource.type = "cloud_run_revision"',
        f"resource.labels.service_name = {quoted(service)}",
        f"resource.labels.revision_name = {quoted(revision)}",
    ]
    if query.level and query.level != LEVELS[0]:
        clauses.append(f"severity >= {query.level}")
    if query.text:
        clauses.append(f"(textPayload : {quoted(query.text)} OR jsonPayload.message : {quoted(query.text)})")
    if after is not None:
        moment, insert_id = (quoted(part) for part in after)
        clauses.append(f"(timestamp > {moment} OR (timestamp = {moment} AND insertId > {insert_id}))")
    elif since:
        clauses.append(f"timestamp >= {quoted(since)}")
    return " AND ".join(clauses)


def _number(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


def entry_of(entry) -> LogEntry:
    """One of the portal's entries for a Cloud Logging LogEntry (proto-plus)."""
    level = level_from_severity(SEVERITIES.get(int(entry.severity), "DEFAULT"))
    moment = entry.timestamp.rfc3339() if entry.timestamp else ""
    fields: dict = {}
    if "json_payload" in entry:
        document = {key: _number(value) for key, value in dict(entry.json_payload).items()}
        message = document.get("message")
        fields = {key: value for key, value in document.items() if key not in PAYLOAD_KEYS}
        if not isinstance(message, str):
            message = ", ".join(f"{key}={value}" for key, value in sorted(fields.items()))
    elif "text_payload" in entry:
        message = entry.text_payload.rstrip("\n")
    elif "http_request" in entry:
        request = entry.http_request  # google.logging.type.HttpRequest: a plain protobuf message
        latency = (
            request.latency.ToTimedelta().total_seconds() * 1000 if request.HasField("latency") else None
        )
        message = f"{request.status} {request.request_method} {request.request_url}"
        if latency is not None:
            message += f" ({latency:.1f} ms, client {request.remote_ip or 'unknown'})"
        fields = {"status": request.status, "method": request.request_method, "client": request.remote_ip}
    else:
        message = "(an entry without a payload the portal reads)"
    return LogEntry(time=moment, level=level, message=message, fields=fields)


def read_log(ctx: Context, endpoint: str, revision: str, query: LogQuery) -> LogPage:
    """A page of the revision's entries, as the module's docstring says."""
    from google.cloud.logging_v2.types import ListLogEntriesRequest

    service = run.service_id(endpoint)
    after = None
    if query.after:
        cursor_revision, moment, insert_id = parse_cursor(query.after)
        if cursor_revision == revision:
            after = (moment, insert_id)
    since = rfc3339(datetime.fromtimestamp(ctx.wall(), UTC) - LOOKBACK)
    request = ListLogEntriesRequest(
        resource_names=[f"projects/{ctx.cfg.project}"],
        filter=log_filter(service, revision, query, since=since, after=after),
        order_by="timestamp asc" if after is not None else "timestamp desc",
        page_size=query.limit + 1,  # one more says whether there are more
    )
    pager = ctx.call(
        ctx.clients.logging().list_log_entries,
        request=request,
        what=f"Read the log of {revision} from Cloud Logging",
    )
    found = list(next(iter(pager.pages)).entries)
    more = len(found) > query.limit
    found = found[: query.limit]
    if after is None:
        found.reverse()  # newest last
    if found:
        newest = found[-1]
        cursor = f"{revision}|{newest.timestamp.rfc3339()}|{newest.insert_id}"
    elif after is not None:
        cursor = query.after
    else:
        cursor = f"{revision}|{since}|"
    return LogPage(
        revision=revision, entries=tuple(entry_of(entry) for entry in found), cursor=cursor, more=more
    )
