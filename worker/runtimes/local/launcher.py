"""A warm launcher: import the serving stack once, then fork a serving process per revision.

`python -m serving` given a skops file spends nearly all of its start-up importing scikit-learn,
skops and the ONNX converter (about 4 s of CPU on a small machine; loading and converting iris takes
0.1 s); given a version's ONNX form it needs only ONNX Runtime and starts in about 0.3 s. The
launcher pays that once: it imports them, listens on `<LOCAL_RUNTIME_DIR>/launcher.sock`, and for
each request forks a child that becomes a new session, points its output at the revision's log,
takes the request's environment and working directory, and runs `serving` exactly as `-m serving`
would (`runpy`). A deploy's serving process is then ready in a fraction of a second.

It is an optimisation only: whenever the launcher cannot be used (not installed, failed to start,
out of date), the runtime spawns `python -m serving` as before. The launcher exits when the code
it imported changed (the next deploy starts a fresh one), when its socket is gone, or after
IDLE_SECONDS without a request.

Protocol (`worker/forkserver.py`, one JSON line each way): {"cmd": "ping"} -> {"ok": true, "pid": N};
{"cmd": "spawn", "env": {...}, "cwd": "...", "log": "..."} -> {"ok": true, "pid": N}
or {"ok": false, "error": "..."}.

This module is imported by the runtime (the client half) and run as a script (the server half,
`python launcher.py --serving-launcher SOCKET`); the server half never imports Django.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

IDLE_SECONDS = 3600.0
FORKSERVER = Path(__file__).resolve().parents[2] / "forkserver.py"
MARKER = "--serving-launcher"
HEAVY_MODULES = (
    "numpy",
    "scipy.special",
    "sklearn",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.tree",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.compose",
    "skops.io",
    "skl2onnx",
    "onnx",
    "onnxruntime",
    "serving.supervisor",
    "serving.worker",
    "serving.app",
)


# The client half (in the worker) ------------------------------------------------------------------


def socket_path(root: Path) -> Path:
    from worker.runtimes.local.state import fit_socket_path

    return fit_socket_path(Path(root) / "launcher.sock")


def pid_path(root: Path) -> Path:
    return Path(root) / "launcher.pid"


def request(root: Path, command: dict, *, timeout: float = 5.0) -> dict:
    """One command to the launcher; raises ControlError when it cannot answer."""
    from serving.control import send_command

    return send_command(socket_path(root), command, timeout=timeout)


def start(root: Path, *, cwd: Path, env: dict[str, str]) -> int:
    """Start a launcher for `root` in its own session (without waiting for it); returns its pid."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "launcher.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, __file__, MARKER, os.fspath(socket_path(root))],
            cwd=cwd,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    from worker.runtimes.local import processes

    processes.adopt(process)
    processes.write_pid_file(pid_path(root), process.pid)
    return process.pid


def answers(root: Path) -> bool:
    from serving.control import ControlError

    try:
        return bool(request(root, {"cmd": "ping"}, timeout=2).get("ok"))
    except ControlError:
        return False


def warm(root: Path, *, cwd: Path) -> None:
    """Make sure a launcher is running or starting for `root`, without waiting for it."""
    from serving.control import ControlError
    from worker.runtimes.local import processes
    from worker.runtimes.local.state import file_lock

    with file_lock(Path(root) / "launcher.lock"):
        pid = processes.read_pid_file(pid_path(root))
        if pid is not None:
            try:
                stamp = request(root, {"cmd": "ping"}, timeout=2).get("stamp")
            except ControlError:
                return  # still importing: it will be ready soon
            if stamp == _code_stamp(Path(cwd)):
                return
            processes.terminate(pid, grace=2.0)  # it holds code older than what is installed now
        start(Path(root), cwd=cwd, env=processes.serving_env({}))


def ready(root: Path, *, cwd: Path, timeout: float) -> bool:
    """Make sure a launcher answers for `root`, starting one and waiting for it if need be."""
    from worker.runtimes.local import processes
    from worker.runtimes.local.state import file_lock

    if answers(root):
        return True
    with file_lock(Path(root) / "launcher.lock"):
        pid = processes.read_pid_file(pid_path(root))
        if pid is None:
            pid = start(Path(root), cwd=cwd, env=processes.serving_env({}))
        deadline = time.monotonic() + timeout
        delay = 0.02
        while processes.alive(pid) and time.monotonic() < deadline:
            if answers(root):
                return True
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)
        if processes.alive(pid):  # hung: make room for a fresh one next time
            processes.terminate(pid, grace=1.0)
    return False


def spawn(
    root: Path, *, env: dict[str, str], cwd: Path, log_path: Path, pid_file: Path, timeout: float
) -> int | None:
    """Fork a serving process from the launcher, which records its pid in `pid_file` before it
    answers; None when the launcher cannot be used."""
    from serving.control import ControlError
    from worker.runtimes.local import processes

    command = {
        "cmd": "spawn",
        "env": env,
        "cwd": os.fspath(cwd),
        "log": os.fspath(log_path),
        "pid_file": os.fspath(pid_file),
    }
    for _ in range(2):  # a stale launcher leaves; the second try gets a fresh one
        if not ready(root, cwd=cwd, timeout=timeout):
            return None
        try:
            answer = request(root, command, timeout=10)
        except ControlError:
            return None
        if answer.get("ok"):
            return int(answer["pid"])
        stale = processes.read_pid_file(pid_path(root))
        if stale is None or not str(answer.get("error", "")).startswith("stale"):
            return None
        processes.wait_gone(stale, 5.0)
    return None


def stop(root: Path) -> None:
    from worker.runtimes.local import processes

    pid = processes.read_pid_file(pid_path(root))
    if pid is not None:
        processes.terminate(pid, grace=2.0)
    for path in (pid_path(root), socket_path(root)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# The server half (its own process) ----------------------------------------------------------------


def _code_stamp(base: Path) -> float:
    """The newest modification time among the files whose code the launcher holds in memory."""
    from worker.forkserver import newest_mtime

    # New pins in requirements.txt usually mean new libraries.
    return newest_mtime([__file__, FORKSERVER, base / "serving", base / "serving" / "requirements.txt"])


def _warm_up() -> None:
    from worker.forkserver import import_ahead, say

    import_ahead("launcher", HEAVY_MODULES)
    try:  # the ONNX converters load lazily on their first use
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        from serving.model import convert_to_onnx

        rows = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [1.0, 1.0]])
        convert_to_onnx(LogisticRegression().fit(rows, [0, 1, 0, 1]), 2)
    except Exception as exc:
        say("launcher", f"could not warm up the ONNX converter: {exc!r}")


def _child(conn: socket.socket, server: socket.socket, command: dict) -> None:
    """In the forked child: become the serving process described by `command`. Never returns."""
    from worker.forkserver import detach, exit_now

    code = 1
    try:
        server.close()
        conn.close()
        detach(command["log"])
        with contextlib.suppress(OSError):
            Path("/proc/self/comm").write_text("serving")
        os.chdir(command["cwd"])
        os.environ.clear()
        os.environ.update(command["env"])
        sys.argv = [sys.executable, "-m", "serving"]
        import runpy

        runpy.run_module("serving", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, int):
            code = exc.code
        elif exc.code is None:
            code = 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        exit_now(code)


def serve(path: str) -> None:
    base = Path.cwd()
    sys.path[0] = os.fspath(base)  # as `python -m` would: the project's packages, not this folder
    sys.path.insert(1, os.fspath(FORKSERVER.parents[1]))  # and this file's own, for the server loop
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    from worker import forkserver

    forkserver.serve(
        path,
        name="launcher",
        command="spawn",
        warm=_warm_up,
        stamp=lambda: _code_stamp(base),
        child=_child,
        idle_seconds=IDLE_SECONDS,
        reply_pid=True,
    )


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == MARKER:
    serve(sys.argv[2])
