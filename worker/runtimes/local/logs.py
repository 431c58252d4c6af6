"""Read a revision's log file (`<endpoint>/<revision>.log`) as entries, for the log panel.

The file holds what the serving process wrote: the request log's JSON lines (serving/request_log.py),
its own text lines (`2026-12-06T03:47:37.123Z INFO serving[42] serving: ...`, or the local-time
form of earlier versions), and whatever else reached its output (a traceback's lines belong to the
entry above them). A cursor is `<revision>:<byte offset>`: following reads only the bytes written
since, and never more than READ_BYTES at a time.

    page = read_log_file(path, "iris-d7", LogQuery(level="WARNING"))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from worker.runtimes.logs import LogEntry, LogPage, LogQuery, LogQueryError, entry_from_line

READ_BYTES = 1 << 20  # the most read for one page: a tail's window, or a follow's step


@dataclass
class _Parsed:
    entry: LogEntry
    end: int  # the offset just past its last line


def parse(data: bytes, base: int) -> list[_Parsed]:
    """The entries in `data` (complete lines read from offset `base`)."""
    parsed: list[_Parsed] = []
    offset = base
    for raw in data.splitlines(keepends=True):
        offset += len(raw)
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line.strip():
            if parsed:
                parsed[-1].end = offset
            continue
        entry = entry_from_line(line)
        if entry is None and parsed:
            previous = parsed[-1].entry
            parsed[-1] = _Parsed(
                LogEntry(previous.time, previous.level, previous.message + "\n" + line, previous.fields),
                offset,
            )
        else:
            parsed.append(_Parsed(entry or LogEntry(time="", level="INFO", message=line), offset))
    return parsed


def cursor_of(revision: str, offset: int) -> str:
    return f"{revision}:{offset}"


def parse_cursor(cursor: str) -> tuple[str, int]:
    revision, _, offset = cursor.rpartition(":")
    if not revision or not offset.isdigit():
        raise LogQueryError("the cursor is not one this log gave")
    return revision, int(offset)


def read_log_file(path: Path, revision: str, query: LogQuery) -> LogPage:
    """A page of the log file at `path` (the revision `revision`'s), as `query` asks."""
    start = None
    if query.after:
        cursor_revision, offset = parse_cursor(query.after)
        if cursor_revision == revision:
            start = offset
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if start is not None and start <= size:
                return _follow(file, revision, query, start, size)
            return _tail(file, revision, query, size)  # a fresh read, or the file was replaced
    except FileNotFoundError:
        return LogPage(revision=revision, cursor=cursor_of(revision, 0))


def _complete(data: bytes) -> bytes:
    """`data` up to its last newline: a line still being written waits for the next read."""
    cut = data.rfind(b"\n")
    return data[: cut + 1] if cut >= 0 else b""


def _tail(file, revision: str, query: LogQuery, size: int) -> LogPage:
    begin = max(0, size - READ_BYTES)
    file.seek(begin)
    data = _complete(file.read(size - begin))
    base = begin
    if begin > 0:  # the window starts mid-line: skip to the next one
        cut = data.find(b"\n") + 1
        data, base = data[cut:], begin + cut
    parsed = parse(data, base)
    matched = [item.entry for item in parsed if query.matches(item.entry)]
    shown = matched[-query.limit :]
    return LogPage(
        revision=revision,
        entries=tuple(shown),
        cursor=cursor_of(revision, base + len(data)),
        more=len(matched) > len(shown) or begin > 0,
    )


def _follow(file, revision: str, query: LogQuery, start: int, size: int) -> LogPage:
    file.seek(start)
    chunk = file.read(min(READ_BYTES, size - start))
    data = _complete(chunk)
    if not data and len(chunk) == READ_BYTES:  # one line longer than a read: step over it
        return LogPage(revision=revision, cursor=cursor_of(revision, start + len(chunk)), more=True)
    shown: list[LogEntry] = []
    end = start + len(data)
    resume = start
    for item in parse(data, start):
        if query.matches(item.entry):
            if len(shown) == query.limit:
                end = resume  # the next read starts with this entry
                break
            shown.append(item.entry)
        resume = item.end
    return LogPage(revision=revision, entries=tuple(shown), cursor=cursor_of(revision, end), more=end < size)
