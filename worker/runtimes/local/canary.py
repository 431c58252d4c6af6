"""Canary shares on the local runtime: two revisions on the endpoint's one port.

The stable revision (the endpoint's current one) keeps the port; the canary has taken the same
listener at start but is told to take only what the stable one forwards to it (`serve_forwarded`),
and the stable one is told which share to forward (`canary`), both over their control sockets, so
a share is set, changed or cleared without a restart (see `serving/canary.py` for how requests
are picked and relayed). The endpoint folder's `canary.json` records the canary and its share.

    share(target, stable="iris-d7", canary="iris-d8", percent=10)
    share(target, stable="iris-d7", canary="iris-d8", percent=50)
    promote(target, "iris-d8")      # the canary serves every request; iris-d7 stops
    abort(target, "iris-d8")        # or: every request back to iris-d7; iris-d8 stops

Callers hold the endpoint's lock.
"""

from __future__ import annotations

from serving.control import ControlError, send_command
from worker.runtimes.base import PermanentError, TransientError
from worker.runtimes.local import processes
from worker.runtimes.local.state import EndpointDir

SERVE_TIMEOUT = 35.0  # serving answers once its workers accept, or gives up after 30 s


def _command(target: EndpointDir, revision: str, command: dict) -> dict:
    try:
        answer = send_command(target.socket_path(revision), command, timeout=SERVE_TIMEOUT)
    except ControlError as exc:
        raise TransientError(f"{revision} did not take the {command['cmd']} command: {exc}") from None
    if not answer.get("ok"):
        raise PermanentError(
            f"{revision} refused the {command['cmd']} command: {answer.get('error') or answer}"
        )
    return answer


def running(target: EndpointDir, revision: str | None) -> bool:
    return bool(revision) and processes.read_pid_file(target.pid_file(revision or "")) is not None


def share(target: EndpointDir, *, stable: str, canary: str, percent: int) -> None:
    """Send `percent` of the stable revision's requests to the canary (1 to 99)."""
    if not running(target, stable):
        raise PermanentError(f"{stable}, the version a canary shares the port with, is not running")
    if not running(target, canary):
        raise PermanentError(f"the canary {canary} is not running")
    _command(target, canary, {"cmd": "serve_forwarded"})
    _command(
        target, stable, {"cmd": "canary", "to": str(target.forward_socket_path(canary)), "percent": percent}
    )
    target.set_canary(canary, percent)


def promote(target: EndpointDir, canary: str) -> str | None:
    """Give the canary every request: it accepts on the port, the stable revision forwards nothing
    more and becomes the previous one (stopped by the caller). Returns the stable revision."""
    stable = target.current()
    if not running(target, canary):
        raise PermanentError(f"the canary {canary} is not running")
    _command(target, canary, {"cmd": "serve"})
    if stable and stable != canary and running(target, stable):
        _command(target, stable, {"cmd": "canary", "percent": 0})
    target.set_current(canary)
    target.set_canary(None)
    return stable if stable != canary else None


def abort(target: EndpointDir, canary: str) -> bool:
    """Send every request back to the stable revision; True if the canary still had a share
    (stopping its process is the caller's)."""
    stable = target.current()
    recorded = target.canary()
    had_share = bool(recorded and recorded["revision"] == canary)
    if stable and stable != canary and running(target, stable):
        _command(target, stable, {"cmd": "canary", "percent": 0})
    if had_share:
        target.set_canary(None)
    return had_share
