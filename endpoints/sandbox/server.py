"""The sandbox server: import the model stack once, then fork a confined process per job.

Run as `python -m endpoints.sandbox.server SOCKET` with a scrubbed environment (`client.py`
starts it); it never imports Django, so it holds no setting, database handle or credential. For
each {"cmd": "run", "dir": ..., "job": {...}, "limits": {...}} it forks a supervisor, which forks
the job process and answers on the connection once the job has ended:

    {"ok": true}                                   the job wrote result.json in its folder
    {"ok": false, "limit": "memory", "error": "..."}   a limit was hit, or the job crashed

The job process: a new session; stdin from /dev/null and output to `output.log` in its folder;
every other descriptor closed; the folder as working directory, HOME and TMPDIR; an empty
environment but for PATH and locale; on Linux, where the kernel allows it, a network namespace of
its own (no interface but a loopback that is down) and a mount namespace in which the portal's
data folders (the job's "hide" list: VAR_DIR with its generated secrets and SQLite database, the
media folder) are covered by empty mounts; RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE and no core files.
The supervisor kills its session at the wall-time limit.

The loop itself, "ping" and leaving when stale or idle, is `worker/forkserver.py`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import socket
import sys
from pathlib import Path

from serving.control import reply
from worker.forkserver import detach, exit_now, import_ahead, newest_mtime, say

IDLE_SECONDS = 1800.0
BASE = Path(__file__).resolve().parents[2]
CODE = ("endpoints/artifacts.py", "endpoints/sandbox", "worker/forkserver.py", "serving")
WARM_MODULES = (
    "numpy",
    "scipy.sparse",
    "sklearn",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.tree",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.compose",
    "skops.io",
    "joblib",
    "skl2onnx",
    "onnx",
    "onnxruntime",
    "endpoints.artifacts",
    "serving.model",
)
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_REC, MS_PRIVATE = 0x4000, 0x40000
MS_COVER = 0x2 | 0x4 | 0x8  # nosuid, nodev, noexec
MEMORY_EXIT = 3  # the job's exit status when an allocation failed under RLIMIT_AS
JOB_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def code_stamp() -> float:
    """The newest modification time among the files whose code the server holds in memory."""
    return newest_mtime(BASE / name for name in CODE)


def _warm_up() -> None:
    import_ahead("sandbox", WARM_MODULES)
    try:  # converters and lazily imported submodules load on their first use
        from endpoints.artifacts import warm_up

        warm_up()
    except Exception as exc:
        say("sandbox", f"could not warm up the inspection: {exc!r}")


# The job process ----------------------------------------------------------------------------------


def _confine(hide: list[str]) -> dict:
    """Give this process network and mount namespaces of its own; cover `hide` with empty mounts.

    The working directory stays reachable through the process's cwd even where a mount covers
    its path. Says what worked: {"network": "isolated", "files": "hidden: ..."} or why not.
    """
    if not sys.platform.startswith("linux"):
        reason = f"not isolated: {sys.platform} has no namespaces"
        return {"network": reason, "files": reason}
    libc = ctypes.CDLL(None, use_errno=True)
    user = 0 if os.geteuid() == 0 else CLONE_NEWUSER
    if libc.unshare(user | CLONE_NEWNET | CLONE_NEWNS) != 0:
        reason = os.strerror(ctypes.get_errno())
        network = "isolated" if libc.unshare(user | CLONE_NEWNET) == 0 else f"not isolated: {reason}"
        return {"network": network, "files": f"not hidden: unshare refused ({reason})"}
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return {"network": "isolated", "files": f"not hidden: {os.strerror(ctypes.get_errno())}"}
    covered: list[str] = []
    for path in sorted(hide):
        if any(path.startswith(f"{done}/") for done in covered):
            continue  # under a folder already covered
        if (
            os.path.isdir(path)
            and libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", MS_COVER, b"size=4k,mode=000") == 0
        ):
            covered.append(path)
    missed = [
        path for path in hide if not any(path == done or path.startswith(f"{done}/") for done in covered)
    ]
    return {
        "network": "isolated",
        "files": f"hidden: {', '.join(covered)}" + (f"; not: {missed}" if missed else ""),
    }


def _limit(limits: dict) -> None:
    memory, cpu, file_size = (
        int(limits["memory_bytes"]),
        int(limits["cpu_seconds"]),
        int(limits["file_bytes"]),
    )
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))


def _job(workdir: str, job: dict, limits: dict) -> None:
    """In the job process: confine it, run the job, write result.json. Never returns."""
    code = 1
    try:
        detach(os.path.join(workdir, "output.log"), flags=os.O_TRUNC)
        os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        for sig in (signal.SIGXCPU, signal.SIGXFSZ):  # Python ignores SIGXFSZ; the limits need both
            signal.signal(sig, signal.SIG_DFL)
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update(JOB_ENV, HOME=".", TMPDIR=".")
        import tempfile

        tempfile.tempdir = "."  # the job's folder, by the cwd: its path may be covered below
        confinement = _confine(job.get("hide", []))
        _limit(limits)
        from endpoints.artifacts import run_job

        try:
            result = run_job(Path("."), job)
        except MemoryError:
            code = MEMORY_EXIT
            return
        result.update(confinement)
        with open("result.json", "w") as handle:
            json.dump(result, handle)
        code = 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        exit_now(code)


# The supervisor -----------------------------------------------------------------------------------


def verdict(status: int, *, timed_out: bool, limits: dict) -> dict:
    """What the job's end means: ok, or which limit was hit / how it crashed."""
    if timed_out:
        return {"ok": False, "limit": "wall_time", "error": f"it ran past {limits['wall_seconds']} s"}
    if os.WIFEXITED(status):
        if os.WEXITSTATUS(status) == 0:
            return {"ok": True}
        if os.WEXITSTATUS(status) == MEMORY_EXIT:
            return {
                "ok": False,
                "limit": "memory",
                "error": f"it needed more than {limits['memory_bytes']:,} bytes",
            }
        return {"ok": False, "limit": "", "error": f"it failed (exit status {os.WEXITSTATUS(status)})"}
    sig = os.WTERMSIG(status)
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and _cpu_spent() >= limits["cpu_seconds"]):
        return {
            "ok": False,
            "limit": "cpu_time",
            "error": f"it used more than {limits['cpu_seconds']} s of CPU",
        }
    if sig == signal.SIGXFSZ:
        return {
            "ok": False,
            "limit": "file_size",
            "error": f"it wrote a file past {limits['file_bytes']:,} bytes",
        }
    name = signal.Signals(sig).name
    # Allocation failures inside native code often end in an abort or a segmentation fault.
    return {
        "ok": False,
        "limit": "",
        "error": f"it crashed ({name}); a model past the memory limit can end so",
    }


def _cpu_spent() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _supervise(conn: socket.socket, server: socket.socket, command: dict) -> None:
    """In the supervisor: run one job to its end and answer. Never returns."""
    try:
        server.close()
        conn.settimeout(None)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        limits = command["limits"]
        pid = os.fork()
        if pid == 0:
            conn.close()
            _job(command["dir"], command["job"], limits)
        pidfd = os.pidfd_open(pid)
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            timed_out = not poller.poll(float(limits["wall_seconds"]) * 1000)
        finally:
            os.close(pidfd)
        if timed_out:
            for kill in (os.killpg, os.kill):  # the group once it has its own session
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        reply(conn, verdict(status, timed_out=timed_out, limits=limits))
    except BaseException as exc:
        reply(conn, {"ok": False, "limit": "", "error": f"the sandbox failed: {exc!r}"})
    finally:
        os._exit(0)


def serve(path: str) -> None:
    sys.path[0] = os.fspath(BASE)
    os.chdir(BASE)
    from worker import forkserver

    forkserver.serve(
        path,
        name="sandbox",
        command="run",
        warm=_warm_up,
        stamp=code_stamp,
        child=_supervise,
        idle_seconds=IDLE_SECONDS,
        reply_pid=False,
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m endpoints.sandbox.server SOCKET")
    serve(sys.argv[1])
