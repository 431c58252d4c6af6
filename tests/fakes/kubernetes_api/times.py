"""Timestamps as the API writes them (RFC 3339, seconds, UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime(FORMAT)


def parse_time(stamp: str) -> float:
    return datetime.strptime(stamp, FORMAT).replace(tzinfo=UTC).timestamp()
