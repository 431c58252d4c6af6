"""Reading a live revision's log: the query, the entries and the page a runtime returns.

    page = runtime.read_log("iris", live_resources, LogQuery(level="WARNING", text="403"))
    page.entries[-1].message      # the newest entry that matches, last
    later = runtime.read_log("iris", live_resources, LogQuery(after=page.cursor))  # only what came since

Entries come oldest first, newest last. Without `after` a page holds the newest `limit` entries
that match; with it, the entries written after the cursor (the oldest `limit` of them, and
`more` says whether others wait: read again from the new cursor). A cursor is opaque: each runtime
writes its own, and a cursor for a revision that no longer serves starts the new one's log over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

#: Levels, least severe first, as Python's logging and Cloud Logging (a subset) name them.
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
RANK = {level: rank for rank, level in enumerate(LEVELS)}
MAX_LIMIT = 500
MAX_TEXT = 200
MAX_CURSOR = 400


class LogQueryError(ValueError):
    """The query cannot be read: the message says which part and why."""


@dataclass(frozen=True)
class LogQuery:
    level: str = ""  # the least severe level shown; "" shows every level
    text: str = ""  # shown entries contain it (case-insensitive)
    limit: int = 200
    after: str = ""  # a cursor from an earlier page: only later entries

    def __post_init__(self):
        if self.level and self.level not in RANK:
            raise LogQueryError(f"level must be one of {', '.join(LEVELS)}, not {self.level!r}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise LogQueryError(f"limit must be between 1 and {MAX_LIMIT}")
        if len(self.text) > MAX_TEXT:
            raise LogQueryError(f"the text to look for is longer than {MAX_TEXT} characters")
        if len(self.after) > MAX_CURSOR or any(ord(char) < 32 for char in self.text + self.after):
            raise LogQueryError("the cursor or the text holds characters a log query cannot take")

    def matches(self, entry: LogEntry) -> bool:
        if self.level and RANK.get(entry.level, RANK["INFO"]) < RANK[self.level]:
            return False
        return not self.text or self.text.casefold() in entry.message.casefold()


@dataclass(frozen=True)
class LogEntry:
    time: str  # RFC 3339 in UTC ("" when the line says no time)
    level: str  # one of LEVELS
    message: str
    # What a request line says beside its message: status, method, path, reason, latency_ms, client.
    fields: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"time": self.time, "level": self.level, "message": self.message, **self.fields}


@dataclass(frozen=True)
class LogPage:
    revision: str | None  # whose log this is (None when nothing serves the endpoint)
    entries: tuple[LogEntry, ...] = ()
    cursor: str = ""  # pass as LogQuery.after to read what comes next
    more: bool = False  # more entries matched than `limit`: older ones left out, or later ones waiting

    def as_json(self) -> dict:
        return {
            "revision": self.revision,
            "entries": [entry.as_json() for entry in self.entries],
            "cursor": self.cursor,
            "more": self.more,
        }


def level_from_severity(severity: str) -> str:
    """One of LEVELS for a Python level name or a Cloud Logging severity."""
    severity = severity.upper()
    if severity in RANK:
        return severity
    return {
        "WARN": "WARNING",
        "FATAL": "CRITICAL",
        "NOTICE": "INFO",
        "DEFAULT": "INFO",
        "ALERT": "CRITICAL",
        "EMERGENCY": "CRITICAL",
    }.get(severity, "INFO")


#: Serving's text lines: `2026-12-06T03:47:37.123Z INFO serving[42] serving: ...`, or the local-time
#: form of earlier versions.
LEVEL = r"(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)"
TEXT_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) " + LEVEL + r" (.*)$")
LOCAL_TIME_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) " + LEVEL + r" (.*)$")
PAYLOAD_KEYS = ("time", "severity", "message")


def entry_from_line(line: str) -> LogEntry | None:
    """The entry a line of serving's output starts: a request log JSON line (serving/request_log.py)
    or one of its text lines; None for a line that continues the one above (a traceback's)."""
    if line.startswith("{"):
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("message"), str):
            fields = {key: value for key, value in document.items() if key not in PAYLOAD_KEYS}
            return LogEntry(
                time=str(document.get("time") or ""),
                level=level_from_severity(str(document.get("severity") or "INFO")),
                message=document["message"],
                fields=fields,
            )
    match = TEXT_LINE.match(line)
    if match:
        return LogEntry(time=match[1], level=level_from_severity(match[2]), message=match[3])
    match = LOCAL_TIME_LINE.match(line)
    if match:
        local = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S").astimezone()
        when = local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{match[2]}Z"
        return LogEntry(time=when, level=level_from_severity(match[3]), message=match[4])
    return None
