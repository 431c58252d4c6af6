"""The local runtime's deploy steps: each runs idempotently and can say what it would do.

steps = DeploySteps(RuntimeDir(root), spec)
for step in steps.all():
    resources.update(step.run(resources).resources)
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from django.conf import settings

from serving.control import ControlError, send_command
from worker.runtimes.artifacts import place_artifact
from worker.runtimes.base import (
    Change,
    DeploySpec,
    PermanentError,
    Step,
    StepResult,
    TransientError,
    deployment_number,
    run_steps,
)
from worker.runtimes.local import canary, launcher, processes
from worker.runtimes.local.state import EndpointDir, RuntimeDir, port_is_free
from worker.runtimes.resources import DeploymentResources

log = logging.getLogger(__name__)

# An access file written this recently (by `apply_access`) may hold newer keys than the deploy's
# spec, which was read from the database just before the steps began: keep it. The margin covers
# the coarse clock the kernel stamps files with.
ACCESS_FRESH_MARGIN_NS = 50_000_000
STOP_GRACE_SECONDS = 10.0
# Logs of this many recent revisions stay for reading; older ones go as new versions go live.
KEEP_LOGS = 10
# Serving answers `serve` once its workers accept, or says it gave up after 30 s.
SERVE_TIMEOUT = 35.0
# How long a deploy waits for a launcher that is still importing before it starts serving cold.
LAUNCHER_WAIT_SECONDS = 30.0


class DeploySteps:
    """The steps of one deploy; each may run again and finds what its earlier run made."""

    def __init__(self, runtime_dir: RuntimeDir, spec: DeploySpec):
        self.spec = spec
        self.dir = runtime_dir
        self.target = self.dir.endpoint(spec.endpoint)
        self.revision = spec.revision
        self.began_ns = time.time_ns()

    def all(self) -> list[Step]:
        return [
            Step("artifact", "Materialise the model artifact", self.artifact, self.plan_artifact),
            Step("access", "Write the access policy", self.access, self.plan_access),
            Step("start", "Start a serving process", self.start, self.plan_start),
            Step("ready", "Wait until it is ready", self.ready),
            Step("switch", "Switch the endpoint's URL to it", self.switch, self.plan_switch),
            Step("stop_previous", "Stop the previous version", self.stop_previous, self.plan_stop_previous),
        ]

    def restart(self) -> list[Step]:
        """A deploy's steps up to the switch: the revision serves again, the others are left alone."""
        return self.all()[:-1]

    def revive(self) -> None:
        """Start the revision again as a deploy would, leaving the other revisions alone."""
        run_steps(self.restart())

    # 1. artifact -------------------------------------------------------------------------------
    def artifact(self, resources: DeploymentResources) -> StepResult:
        return StepResult(place_artifact(self.spec.model, self.dir.artifacts))

    def plan_artifact(self) -> list[Change]:
        model = self.spec.model
        if self.dir.artifact(model.sha256, model.format).exists():
            return [Change("artifact", "none", f"artifact {model.sha256[:12]} is already in place")]
        return [Change("artifact", "create", f"link or copy artifact {model.sha256[:12]}, verify its sha256")]

    # 2. access ---------------------------------------------------------------------------------
    def access(self, resources: DeploymentResources) -> StepResult:
        access = self.spec.access
        try:
            written_ns = self.target.access_file.stat().st_mtime_ns
        except FileNotFoundError:
            written_ns = None
        if written_ns is not None and written_ns > self.began_ns - ACCESS_FRESH_MARGIN_NS:
            return StepResult("Kept the access policy applied moments ago (it is newer than this deploy's).")
        self.target.write_access(access.as_json())
        keys = [key for key in access.keys if not key.revoked]
        parts = [f"mode {access.mode}", f"{len(keys)} active key{'s' * (len(keys) != 1)}"]
        if access.cidrs:
            parts.append(f"{len(access.cidrs)} allowed network{'s' * (len(access.cidrs) != 1)}")
        return StepResult(f"Access policy written: {', '.join(parts)}.")

    def plan_access(self) -> list[Change]:
        access = self.spec.access
        active = [key for key in access.keys if not key.revoked]
        try:
            written = json.loads(self.target.access_file.read_text())
        except (FileNotFoundError, ValueError):
            written = None
        summary = f"mode {access.mode}, {len(active)} key(s), {len(access.cidrs)} network(s)"
        if written == access.as_json():
            return [Change("access", "none", f"the access file already holds {summary}")]
        if written is None:
            return [Change("access", "create", f"write {summary}")]
        return [Change("access", "update", f"rewrite {summary}")]

    # 3. start ----------------------------------------------------------------------------------
    def start(self, resources: DeploymentResources) -> StepResult:
        target, revision = self.target, self.revision
        with target.lock():
            try:
                port = self.dir.allocate_port(
                    self.spec.endpoint,
                    host=settings.LOCAL_RUNTIME_HOST,
                    low=settings.LOCAL_RUNTIME_PORT_MIN,
                    high=settings.LOCAL_RUNTIME_PORT_MAX,
                )
            except OSError as exc:
                raise TransientError(str(exc), retry_after=30) from None
            current = target.current()
            previous = current if current and current != revision else self.spec.previous.get("revision")
            found = DeploymentResources(port=port, previous_revision=previous)
            pid = processes.read_pid_file(target.pid_file(revision))
            if pid is not None:
                return StepResult(f"Serving process {pid} for {revision} is already running.", found)
            target.forget(revision)
            handoff = None
            if current and current != revision and processes.read_pid_file(target.pid_file(current)):
                handoff = target.socket_path(current)
            else:
                self._free_port(port)
            model = self.spec.model
            env = {
                "PORT": str(port),
                "SERVING_HOST": settings.LOCAL_RUNTIME_HOST,
                "SERVING_MODEL_URI": str(self.dir.artifact(model.sha256, model.format)),
                "SERVING_MODEL_META": json.dumps(model.meta()),
                "SERVING_WORKERS": str(settings.LOCAL_RUNTIME_SERVING_WORKERS),
                "SERVING_ACCESS_FILE": str(target.access_file),
                "SERVING_CONTROL_SOCKET": str(target.socket_path(revision)),
                # Where it takes requests a stable revision forwards, should it serve as a canary.
                "SERVING_FORWARD_SOCKET": str(target.forward_socket_path(revision)),
                "SERVING_REVISION": revision,  # named in each request log line
                "SERVING_ENDPOINT": self.spec.endpoint,  # labels its metrics, with the revision
            }
            if handoff:
                env["SERVING_HANDOFF_FROM"] = str(handoff)
            try:
                pid = self.launch(env, target.log_file(revision), target.pid_file(revision))
            except OSError as exc:
                raise TransientError(f"could not start the serving process: {exc}") from None
        taking_over = f", taking over the listener of {current}" if handoff else ""
        return StepResult(f"Started serving process {pid} for {revision} on port {port}{taking_over}.", found)

    def plan_start(self) -> list[Change]:
        target, model = self.target, self.spec.model
        port = target.port()
        where = (
            f"port {port}"
            if port
            else f"a free port from {settings.LOCAL_RUNTIME_PORT_MIN}-{settings.LOCAL_RUNTIME_PORT_MAX}"
        )
        current = self._running_other()
        takeover = f", taking over the listener of {current[0]}" if current else ""
        serves = f"{self.revision} ({model.name} v{model.version})"
        return [Change("start", "create", f"start a serving process for {serves} on {where}{takeover}")]

    def _free_port(self, port: int) -> None:
        """Stop a serving process of this endpoint that holds its port without any record of it
        (one started by a worker killed before it could write the pid file)."""
        if port_is_free(settings.LOCAL_RUNTIME_HOST, port):
            return
        for pid in processes.listening_pids(port):
            if processes.logs_under(pid, self.target.path):
                log.warning(
                    "port %d is held by serving process %d, which no record knows: stopping it", port, pid
                )
                processes.terminate(pid, grace=2.0)

    def launch(self, env: dict[str, str], log_path: Path, pid_file: Path) -> int:
        """Fork the serving process from the warm launcher, or start `python -m serving` cold; its
        pid is in `pid_file` by the time this returns (a worker killed now leaves no orphan)."""
        full_env = processes.serving_env(env)
        cwd = Path(settings.BASE_DIR)
        pid = launcher.spawn(
            self.dir.root,
            env=full_env,
            cwd=cwd,
            log_path=log_path,
            pid_file=pid_file,
            timeout=LAUNCHER_WAIT_SECONDS,
        )
        if pid is None:
            log.warning("the serving launcher is not available; starting python -m serving cold")
            pid = processes.spawn(env=full_env, cwd=cwd, log_path=log_path)
            processes.write_pid_file(pid_file, pid)
        return pid

    # 4. ready ----------------------------------------------------------------------------------
    def ready(self, resources: DeploymentResources) -> StepResult:
        target, revision = self.target, self.revision
        started = time.monotonic()
        deadline = started + settings.LOCAL_RUNTIME_READY_TIMEOUT
        pid = processes.read_pid_file(target.pid_file(revision))
        delay = 0.01
        while pid is not None and processes.alive(pid):
            try:
                status = send_command(target.socket_path(revision), {"cmd": "status"}, timeout=2)
            except ControlError:
                status = {}
            if status.get("ready"):
                model = self.spec.model
                return StepResult(
                    f"Process {pid} is ready with {model.name} v{model.version} "
                    f"after {time.monotonic() - started:.1f}s."
                )
            if time.monotonic() >= deadline:
                stop_revision(target, revision, grace=2.0)
                raise PermanentError(
                    f"the serving process was not ready after {settings.LOCAL_RUNTIME_READY_TIMEOUT:g}s"
                    + _tail_for_message(target.log_file(revision))
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)
        target.forget(revision)
        raise PermanentError(
            "the serving process exited before it was ready" + _tail_for_message(target.log_file(revision))
        )

    # 5. switch ---------------------------------------------------------------------------------
    def switch(self, resources: DeploymentResources) -> StepResult:
        target, revision = self.target, self.revision
        port = resources.get("port") or target.port()
        if port is None:
            raise PermanentError("the endpoint has no port: the start step did not run")
        with target.lock():
            newer = self.target.newer_running(self.spec.deployment_id)
            if newer:
                stop_revision(target, revision, grace=2.0)
                raise PermanentError(f"{newer}, a later deployment, already serves the endpoint")
            pid = processes.read_pid_file(target.pid_file(revision))
            if pid is None:
                raise PermanentError(
                    "the serving process stopped before it could serve"
                    + _tail_for_message(target.log_file(revision))
                )
            if self.spec.traffic_percent < 100 and target.current() not in (None, revision):
                return self._share(port)
            try:
                answer = send_command(target.socket_path(revision), {"cmd": "serve"}, timeout=SERVE_TIMEOUT)
            except ControlError as exc:
                raise TransientError(f"the serving process did not take the serve command: {exc}") from None
            if not answer.get("ok"):
                if target.current() != revision:  # the live revision keeps the URL; this one goes
                    stop_revision(target, revision, grace=2.0)
                raise PermanentError(f"the serving process refused to serve: {answer.get('error') or answer}")
            current = target.current()
            previous = current if current and current != revision else resources.get("previous_revision")
            target.set_current(revision)
            target.set_canary(None)  # whatever canary served beside the old version goes with it
        url = f"http://{settings.LOCAL_RUNTIME_PUBLIC_HOST}:{port}"
        _check_readyz(port)
        return StepResult(
            f"{url} now answers from {revision}.",
            {"url": url, "revision": revision, "previous_revision": previous},
        )

    def _share(self, port: int) -> StepResult:
        """A canary: the current revision keeps the port and forwards the deploy's share to this one
        (the caller holds the endpoint's lock)."""
        target, revision, percent = self.target, self.revision, self.spec.traffic_percent
        stable = target.current()
        assert stable is not None
        canary.share(target, stable=stable, canary=revision, percent=percent)
        url = f"http://{settings.LOCAL_RUNTIME_PUBLIC_HOST}:{port}"
        return StepResult(
            f"{url} sends {percent}% of its requests to {revision}, the rest to {stable}.",
            {"url": url, "revision": revision, "previous_revision": stable},
        )

    def plan_switch(self) -> list[Change]:
        port = self.target.port()
        url = f"http://{settings.LOCAL_RUNTIME_PUBLIC_HOST}:{port}" if port else "the endpoint's new URL"
        percent = self.spec.traffic_percent
        if percent < 100 and self._running_other():
            return [Change("switch", "update", f"{url} sends {percent}% of its requests to {self.revision}")]
        return [Change("switch", "update", f"{url} answers from {self.revision}")]

    # 6. stop_previous --------------------------------------------------------------------------
    def stop_previous(self, resources: DeploymentResources) -> StepResult:
        target, revision = self.target, self.revision
        stopped, killed = [], []
        with target.lock():
            current = target.current()
            for other in target.revisions():
                # Later deployments' processes are theirs to manage; the live one stays.
                if other in (revision, current) or deployment_number(other) > self.spec.deployment_id:
                    continue
                outcome = stop_revision(target, other)
                if outcome == "killed":
                    killed.append(other)
                if outcome:
                    stopped.append(other)
            target.prune_logs(keep=KEEP_LOGS, live=(revision, current))
        if not stopped:
            previous = resources.get("previous_revision")
            if current and current != revision:
                return StepResult(f"{current} keeps serving the rest of the requests.")
            if previous:
                return StepResult(f"{previous} had already stopped.")
            return StepResult("Nothing to stop: this is the endpoint's first version.")
        message = f"Stopped {', '.join(stopped)}."
        if killed:
            message += f" {', '.join(killed)} did not stop within {STOP_GRACE_SECONDS:g}s and was killed."
        return StepResult(message)

    def plan_stop_previous(self) -> list[Change]:
        running = self._running_other()
        if running:
            return [Change("stop_previous", "update", f"stop {running[0]} (process {running[1]})")]
        return [Change("stop_previous", "none", "no earlier version is running")]

    def _running_other(self) -> tuple[str, int] | None:
        """The endpoint's current revision and its pid, when it runs and is not this deploy's."""
        current = self.target.current()
        if not current or current == self.revision:
            return None
        pid = processes.read_pid_file(self.target.pid_file(current))
        return (current, pid) if pid else None


def stop_revision(target: EndpointDir, revision: str, *, grace: float = STOP_GRACE_SECONDS) -> str | None:
    """Stop one revision's process and forget its files: "stopped", "killed", or None if none ran."""
    pid = processes.read_pid_file(target.pid_file(revision))
    outcome = None
    if pid is not None:
        outcome = "killed" if processes.terminate(pid, grace=grace) else "stopped"
    target.forget(revision)
    return outcome


def _check_readyz(port: int) -> None:
    """A real GET /readyz on the stable port, as an end user would make it."""
    host = settings.LOCAL_RUNTIME_HOST
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    deadline = time.monotonic() + 5
    problem = ""
    while time.monotonic() < deadline:
        try:
            status, body = processes.http_get(host, port, "/readyz", timeout=2)
        except OSError as exc:
            problem = str(exc)
        else:
            if status == 200:
                return
            problem = f"HTTP {status} {body[:200].decode(errors='replace')}"
        time.sleep(0.05)
    raise TransientError(f"GET /readyz on port {port} failed: {problem}")


def _tail_for_message(log_path: Path) -> str:
    tail = processes.log_tail(log_path)
    return f"; last lines of its log:\n{tail}" if tail else "; it wrote nothing to its log"
