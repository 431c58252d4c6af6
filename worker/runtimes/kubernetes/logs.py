"""Read the live revision's log from its pods (the API server's pods/log, as `kubectl logs` does).

Each pod of the revision is read with `timestamps=true`: the kubelet puts the time it took each
line (RFC 3339 with nanoseconds) before it. The lines are serving's own (`entry_from_line`); a
line that continues the one above (a traceback's) joins it. The pods' entries are merged by those
times. A cursor is `<revision>@<time of the last line read>`: following asks each pod for the lines
of the last seconds since then (`sinceSeconds`, with a margin for the clocks' difference) and keeps
those after it.

    page = read_log(kube, "iris", "iris-d7", LogQuery(level="WARNING"))
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from worker.runtimes.kubernetes import manifests
from worker.runtimes.kubernetes.api import Kube
from worker.runtimes.logs import LogEntry, LogPage, LogQuery, LogQueryError, entry_from_line

#: The most a pod's log gives one page: its newest lines on a fresh read.
TAIL_LINES = 2000
LIMIT_BYTES = 1 << 20
#: How much the worker's clock and the nodes' may differ: a follow asks for this much more.
SKEW_SECONDS = 300
KUBELET_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$")


def instant(stamp: str) -> str:
    """A kubelet time with nine fraction digits, so that times compare as strings."""
    match = KUBELET_TIME.match(stamp)
    if match is None:
        raise LogQueryError("the cursor is not one this log gave")
    return f"{match[1]}.{(match[2] or '').ljust(9, '0')}Z"


def parse_cursor(cursor: str, revision: str) -> str | None:
    """The time a cursor of `revision` stands at; None for another revision's (start over)."""
    cursor_revision, sep, stamp = cursor.rpartition("@")
    if not sep or not cursor_revision:
        raise LogQueryError("the cursor is not one this log gave")
    moment = instant(stamp)
    return moment if cursor_revision == revision else None


def since_seconds(since: str, now: float) -> int:
    """How far back to ask for lines to get those after `since` (the client's read takes only
    `sinceSeconds`): from this worker's clock, with SKEW_SECONDS more for the clocks' difference
    (the lines at or before `since` are dropped here)."""
    moment = datetime.strptime(since[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return max(0, math.ceil(now - moment)) + SKEW_SECONDS


def pod_entries(text: str) -> list[tuple[str, LogEntry]]:
    """(kubelet time, entry) for each entry in a pod's log read with timestamps."""
    found: list[tuple[str, LogEntry]] = []
    for raw in text.splitlines():
        stamp, _, line = raw.partition(" ")
        try:
            moment = instant(stamp)
        except LogQueryError:
            continue  # not a line the kubelet stamped
        if not line.strip():
            continue
        entry = entry_from_line(line)
        if entry is None and found:
            last_time, previous = found[-1]
            joined = LogEntry(previous.time, previous.level, previous.message + "\n" + line, previous.fields)
            found[-1] = (last_time, joined)
            continue
        entry = entry or LogEntry(time="", level="INFO", message=line)
        if not entry.time:
            entry = LogEntry(moment[:23] + "Z", entry.level, entry.message, entry.fields)
        found.append((moment, entry))
    return found


def read_log(kube: Kube, endpoint: str, revision: str, query: LogQuery) -> LogPage:
    since = parse_cursor(query.after, revision) if query.after else None
    selector = {**manifests.selector(endpoint), manifests.REVISION_LABEL: revision}
    merged: list[tuple[str, LogEntry]] = []
    for pod in kube.list("Pod", selector):
        name = pod["metadata"]["name"]
        options: dict = {"timestamps": True, "limit_bytes": LIMIT_BYTES, "container": manifests.CONTAINER}
        if since is not None:
            options["since_seconds"] = since_seconds(since, kube.wall())
        else:
            options["tail_lines"] = TAIL_LINES
        text = kube.log(name, what=f"Read the log of pod {name}", **options)
        merged += [(moment, entry) for moment, entry in pod_entries(text) if since is None or moment > since]
    merged.sort(key=lambda item: item[0])
    last = merged[-1][0] if merged else since
    matched = [(moment, entry) for moment, entry in merged if query.matches(entry)]
    if since is None:
        shown = matched[-query.limit :]
        more = len(matched) > len(shown)
    else:
        shown = matched[: query.limit]
        more = len(matched) > len(shown)
        if more:
            last = shown[-1][0]  # the next read goes on after the last entry shown
    cursor = f"{revision}@{last}" if last else ""
    return LogPage(revision=revision, entries=tuple(entry for _, entry in shown), cursor=cursor, more=more)
