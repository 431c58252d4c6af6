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

Protocol (one JSON line each way): {"cmd": "ping"} -> {"ok": true, "pid": N};
{"cmd": "spawn", "env": {...}, "cwd": "...", "log": "..."} -> {"ok": true, "pid": N}
or {"ok": false, "error": "..."}.

This module is imported by the runtime (the client half) and run as a script (the server half,
`python launcher.py --serving-launcher SOCKET`); the server half never imports Django.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

IDLE_SECONDS = 3600.0
CHECK_SECONDS = 30.0
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
    """One command to the launcher; raises OSError or ValueError when it cannot answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(os.fspath(socket_path(root)))
        conn.sendall(json.dumps(command).encode() + b"\n")
        buffer = b""
        while b"\n" not in buffer:
            chunk = conn.recv(65536)
            if not chunk:
                break
            buffer += chunk
    answer = json.loads(buffer.split(b"\n", 1)[0] or b"null")
    if not isinstance(answer, dict):
        raise ValueError(f"the launcher answered {answer!r}")
    return answer


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
    try:
        return bool(request(root, {"cmd": "ping"}, timeout=2).get("ok"))
    except (OSError, ValueError):
        return False


def warm(root: Path, *, cwd: Path) -> None:
    """Make sure a launcher is running or starting for `root`, without waiting for it."""
    from worker.runtimes.local import processes
    from worker.runtimes.local.state import file_lock

    with file_lock(Path(root) / "launcher.lock"):
        pid = processes.read_pid_file(pid_path(root))
        if pid is not None:
            try:
                stamp = request(root, {"cmd": "ping"}, timeout=2).get("stamp")
            except (OSError, ValueError):
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


def spawn(root: Path, *, env: dict[str, str], cwd: Path, log_path: Path, timeout: float) -> int | None:
    """Fork a serving process from the launcher; None when the launcher cannot be used."""
    from worker.runtimes.local import processes

    command = {"cmd": "spawn", "env": env, "cwd": os.fspath(cwd), "log": os.fspath(log_path)}
    for _ in range(2):  # a stale launcher leaves; the second try gets a fresh one
        if not ready(root, cwd=cwd, timeout=timeout):
            return None
        try:
            answer = request(root, command, timeout=10)
        except (OSError, ValueError):
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
    stamps = [Path(__file__).stat().st_mtime]
    stamps += [path.stat().st_mtime for path in (base / "serving").glob("**/*.py")]
    with contextlib.suppress(FileNotFoundError):  # new pins usually mean new libraries
        stamps.append((base / "serving" / "requirements.txt").stat().st_mtime)
    return max(stamps)


def _say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} launcher[{os.getpid()}]: {message}", flush=True)


def _warm_up() -> None:
    import importlib

    for name in HEAVY_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a missing optional module only costs its import later
            _say(f"could not import {name} ahead of time: {exc!r}")
    try:  # the ONNX converters load lazily on their first use
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        from serving.model import convert_to_onnx

        rows = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [1.0, 1.0]])
        convert_to_onnx(LogisticRegression().fit(rows, [0, 1, 0, 1]), 2)
    except Exception as exc:
        _say(f"could not warm up the ONNX converter: {exc!r}")


def _child(conn: socket.socket, server: socket.socket, command: dict) -> None:
    """In the forked child: become the serving process described by `command`. Never returns."""
    code = 1
    try:
        server.close()
        conn.close()
        os.setsid()
        log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
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
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(path: str) -> None:
    base = Path.cwd()
    sys.path[0] = os.fspath(base)  # as `python -m` would: the project's packages, not this folder
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    started = time.monotonic()
    _warm_up()
    stamp = _code_stamp(base)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the serving processes we fork
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave through `finally`: remove the socket

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(16)
    identity = os.stat(path).st_ino
    server.settimeout(CHECK_SECONDS)
    _say(f"ready after {time.monotonic() - started:.1f}s, listening on {path}")
    last_request = time.monotonic()
    try:
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                try:
                    still_ours = os.stat(path).st_ino == identity
                except FileNotFoundError:
                    still_ours = False
                if not still_ours:
                    _say("my socket is gone; leaving")
                    return
                if time.monotonic() - last_request > IDLE_SECONDS:
                    _say(f"idle for {IDLE_SECONDS:.0f}s; leaving")
                    return
                continue
            last_request = time.monotonic()
            with conn:
                conn.settimeout(5)
                try:
                    line = conn.makefile("rb").readline(1 << 20)
                    command = json.loads(line)
                except (OSError, ValueError) as exc:
                    _say(f"bad request: {exc!r}")
                    continue
                if command.get("cmd") == "ping":
                    _reply(conn, {"ok": True, "pid": os.getpid(), "stamp": stamp})
                    continue
                if command.get("cmd") != "spawn":
                    _reply(conn, {"ok": False, "error": f"unknown command {command.get('cmd')!r}"})
                    continue
                if _code_stamp(base) != stamp:
                    _reply(conn, {"ok": False, "error": "stale: the serving code changed since I started"})
                    _say("the serving code changed; leaving so a fresh launcher takes over")
                    return
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(conn, server, command)
                _reply(conn, {"ok": True, "pid": pid})
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == identity:
                os.unlink(path)


def _reply(conn: socket.socket, document: dict) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(document).encode() + b"\n")


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == MARKER:
    serve(sys.argv[2])
