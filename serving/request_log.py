"""The request log: one JSON line per refused request (4xx, 5xx), a sampled line for successes.

Each line is one JSON object on stderr, written with a single write() so the workers' lines never
interleave (the local runtime's log file is opened for appending; Cloud Run reads stderr line by
line). Cloud Logging takes `severity`, `message` and `time` from such a line as the entry's own
fields and keeps the rest in `jsonPayload`; the portal's log panel reads the same fields back:

    {"time": "2026-12-06T03:47:37.123456Z", "severity": "WARNING",
     "message": "403 POST /predict: address not allowed (0.2 ms, client 10.0.0.7)",
     "status": 403, "method": "POST", "path": "/predict", "reason": "address not allowed",
     "latency_ms": 0.2, "client": "10.0.0.7", "model": "iris", "version": 3, "revision": "iris-d7"}

Successes are sampled (SERVING_LOG_SUCCESS_SAMPLE, a fraction, 0.001 by default): the app counts
down to the next logged success, so an answer that is not logged costs a decrement and a test.
Refusals are all logged, up to SERVING_LOG_REFUSED_PER_SECOND lines per worker and second (a flood
of bad requests must not turn into a flood of disk writes); past it one line says how many were
left out.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from datetime import UTC, datetime

import orjson

MAX_REASON = 500  # characters of the refusal's reason kept in the line
MAX_PATH = 200
NEVER = 1 << 62  # a countdown that never reaches zero


_second: list = [-1, ""]  # the last whole second formatted, and its text


def utc_now() -> str:
    """The time now as RFC 3339 in UTC with microseconds, as Cloud Logging reads it.

    strftime costs microseconds; a second's text is made once and the fraction added to it.
    """
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{int((now - second) * 1e6):06d}Z"


def severity_of(status: int) -> str:
    return "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"


def reason_of(body: bytes) -> str:
    """The `error` text of a JSON error body (the serving process's error shape) and what it says
    of each field, or "" for another body."""
    if not body or body[:1] != b"{":
        return ""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    reason = document.get("error") if isinstance(document, dict) else None
    if not isinstance(reason, str):
        return ""
    fields = document.get("fields")
    if isinstance(fields, dict) and fields:
        reason += " " + "; ".join(f"{name}: {problem}" for name, problem in fields.items())
    return reason[:MAX_REASON]


class RequestLog:
    """Writes one worker's request lines; `countdown` is how many successes until one is logged."""

    def __init__(
        self,
        *,
        model: str,
        version,
        revision: str | None,
        sample: float,
        refused_per_second: int,
        fd: int = 2,
        clock=time.monotonic,
    ):
        if not 0 <= sample <= 1:
            raise ValueError("the success sample is a fraction between 0 and 1")
        self.fixed = {"model": model, "version": version, "revision": revision}
        self.sample = sample
        self.refused_per_second = refused_per_second
        self.fd = fd
        self.clock = clock
        self.window_end = 0.0
        self.in_window = 0
        self.left_out = 0
        self.countdown = self.next_countdown()

    def next_countdown(self) -> int:
        """Successes until the next logged one: geometric, so on average 1/sample, never periodic."""
        if self.sample <= 0:
            return NEVER
        if self.sample >= 1:
            return 1
        return 1 + int(math.log(1.0 - random.random()) / math.log(1.0 - self.sample))

    def success(self, method: bytes, path: bytes | None, status: int, seconds: float, client) -> None:
        """Log the success whose turn it is (the caller found the countdown run out)."""
        self.countdown = self.next_countdown()
        self.write(method, path, status, "", seconds, client)

    def refused(
        self, method: bytes | None, path: bytes | None, status: int, reason: str, seconds, client
    ) -> None:
        """Log a refusal, within the per-second cap."""
        now = self.clock()
        if now >= self.window_end:
            if self.left_out:
                self.emit(
                    {
                        "severity": "WARNING",
                        "message": f"{self.left_out} refused requests were not logged "
                        f"(over {self.refused_per_second} a second)",
                        "left_out": self.left_out,
                    }
                )
            self.window_end, self.in_window, self.left_out = now + 1.0, 0, 0
        if self.in_window >= self.refused_per_second:
            self.left_out += 1
            return
        self.in_window += 1
        self.write(method, path, status, reason[:MAX_REASON], seconds, client)

    def write(
        self, method: bytes | None, path: bytes | None, status: int, reason: str, seconds, client
    ) -> None:
        shown_path = path.decode("latin-1")[:MAX_PATH] if path is not None else None
        shown_method = method.decode("latin-1")[:16] if method else None
        latency_ms = round(seconds * 1000, 3) if seconds is not None else None
        if shown_method and shown_path:
            message = f"{status} {shown_method} {shown_path}"
        else:
            message = f"{status} {shown_method or shown_path or '(unparsed request)'}"
        if reason:
            message += f": {reason}"
        if latency_ms is not None:
            message += f" ({latency_ms} ms, client {client})" if client else f" ({latency_ms} ms)"
        elif client:
            message += f" (client {client})"
        self.emit(
            {
                "severity": severity_of(status),
                "message": message,
                "status": status,
                "method": shown_method,
                "path": shown_path,
                "reason": reason,
                "latency_ms": latency_ms,
                "client": client,
            }
        )

    def emit(self, fields: dict) -> None:
        line = orjson.dumps({"time": utc_now(), **fields, **self.fixed}) + b"\n"
        try:
            os.write(self.fd, line)
        except OSError:
            pass  # a full disk or a closed stderr must not fail the answer


class JsonFormatter(logging.Formatter):
    """The serving process's own log lines as JSON objects, as Cloud Logging reads them."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "severity": "WARNING" if record.levelname == "WARN" else record.levelname,
            "message": message,
            "logger": record.name,
            "pid": record.process,
        }
        return orjson.dumps(document).decode()


def log_formatter() -> logging.Formatter:
    """How the serving process writes its own log lines: SERVING_LOG_FORMAT `text` (the default
    on this machine) or `json` (the default on Cloud Run, where each line becomes an entry whose
    severity the log panel filters on). Text lines start with the time in UTC, RFC 3339."""
    chosen = os.environ.get("SERVING_LOG_FORMAT", "").strip().lower()
    if chosen not in ("", "text", "json"):
        raise ValueError(f"SERVING_LOG_FORMAT must be text or json, not {chosen!r}.")
    if chosen == "json" or (not chosen and os.environ.get("K_SERVICE")):
        return JsonFormatter()
    formatter = logging.Formatter(
        "%(asctime)s.%(msecs)03dZ %(levelname)s serving[%(process)d] %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    return formatter
