"""Pid files that tell a live process from a reused pid: `<pid> <kernel start time>`.

Written by whoever forks a serving process, before anyone is told its pid, so a process is never
running unrecorded; read back by the local runtime (`worker.runtimes.local.processes`).
"""

from __future__ import annotations

import os
from pathlib import Path


def start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(") ", 1)[1].split()
    return fields[19] if fields[0] != "Z" else None


def write(path: str | os.PathLike, pid: int) -> None:
    """Record `pid` in `path`, atomically (a reader sees the old file or the new one)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{pid} {start_time(pid) or '-'}\n")
    os.replace(tmp, path)
