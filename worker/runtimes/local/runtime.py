"""The local runtime: real serving processes on this machine, so the product needs no cloud.

Each endpoint has one stable port. A deploy starts a serving process for the new revision that
takes over the listening socket from the live one (`SERVING_HANDOFF_FROM`), waits until it is
ready, tells it to serve, and only then stops the old process: both share one listening socket,
so a swap never refuses a connection. Keys and the allowlist are enforced by the serving process
from the endpoint's access file, which `apply_access` rewrites.

    runtime = LocalRuntime()
    for step in runtime.deploy_steps(spec):
        resources.update(step.run(resources).resources)
    resources["url"]  # http://127.0.0.1:18100

The steps of a deploy are in `worker.runtimes.local.steps`, the files it keeps in
`worker.runtimes.local.state`.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from datetime import datetime
from pathlib import Path

from django.conf import settings

from serving.control import ControlError, send_command
from worker.runtimes.base import (
    AccessPolicy,
    Change,
    DeploySpec,
    IssuedKey,
    KeySpec,
    PermanentError,
    PortalAccess,
    Runtime,
    Step,
    StepResult,
    TeardownSpec,
    TransientError,
    deployment_number,
)
from worker.runtimes.local import canary, launcher, processes
from worker.runtimes.local.logs import read_log_file
from worker.runtimes.local.state import EndpointDir, RuntimeDir
from worker.runtimes.local.steps import SERVE_TIMEOUT, DeploySteps, stop_revision
from worker.runtimes.logs import LogPage, LogQuery
from worker.runtimes.resources import DeploymentResources
from worker.runtimes.traffic import Traffic, TrafficSample, check_window, parse_exposition

log = logging.getLogger(__name__)


class LocalRuntime(Runtime):
    name = "local"
    # Two serving processes share the port: the live one forwards the canary its share.
    supports_canary = True
    portal_path = True  # every serving process gives the portal a key of its own (serving.access)
    enforcers = {
        "keys": "the serving process itself",
        "addresses": "the serving process itself",
        "identity": "the serving process itself, against the issuer's published keys",
    }
    # One serving process per endpoint on this machine, its workers set by
    # LOCAL_RUNTIME_SERVING_WORKERS: none of the Cloud Run sizing applies.
    ignored_settings = frozenset(
        {"region", "cpu", "memory", "min_instances", "max_instances", "concurrency", "timeout_seconds"}
    )
    ignored_settings_reason = (
        "The local runtime runs one serving process per endpoint on this machine and does not use it."
    )

    def __init__(self, root: Path | str | None = None):
        self._root = root

    @property
    def dir(self) -> RuntimeDir:
        # Read at call time: the runtime is built once per process, settings may differ in tests.
        return RuntimeDir(self._root or settings.LOCAL_RUNTIME_DIR)

    def deploy_steps(self, spec: DeploySpec) -> list[Step]:
        return DeploySteps(self.dir, spec).all()

    def apply_access(self, endpoint: str, access: AccessPolicy) -> None:
        """Rewrite the access file, then tell every running serving process of the endpoint to read
        it: when they answer, the next request each of them takes is judged by the new policy.

        (Left alone, a serving process notices a changed file within half a second.)
        """
        target = self.dir.endpoint(endpoint)
        target.write_access(access.as_json())
        for revision in target.revisions():
            pid = processes.read_pid_file(target.pid_file(revision))
            if pid is None:
                continue
            try:
                answer = send_command(target.socket_path(revision), {"cmd": "reload_access"}, timeout=5)
            except ControlError as exc:
                if not processes.alive(pid):
                    continue  # it stopped meanwhile; a process started later reads the file anyway
                raise TransientError(f"{revision} did not take the new access policy: {exc}") from None
            if not answer.get("ok"):
                raise PermanentError(f"{revision} refused the new access policy: {answer.get('error')}")

    def read_metrics(self, endpoint: str) -> str:
        """The Prometheus metrics of the endpoint's live serving process, read over its control
        socket (its /metrics route is behind the endpoint's access check)."""
        target = self.dir.endpoint(endpoint)
        revision = target.current()
        if revision is None:
            raise PermanentError(f"{endpoint} has no live serving process")
        try:
            answer = send_command(target.socket_path(revision), {"cmd": "metrics"}, timeout=5)
        except ControlError as exc:
            raise TransientError(f"{revision} did not give its metrics: {exc}") from None
        if not answer.get("ok"):
            raise PermanentError(f"{revision} refused to give its metrics: {answer.get('error')}")
        return answer["metrics"]

    def portal_access(self, endpoint: str, live: DeploymentResources | None) -> PortalAccess:
        """The serving process's own URL and its portal key, asked over its control socket (which
        only this user can use): the key passes the process's access check, and exists only in
        its memory (see serving.access)."""
        target = self.dir.endpoint(endpoint)
        revision = target.current()
        url = (live or {}).get("url") or (f"http://127.0.0.1:{target.port()}" if target.port() else "")
        if revision is None or not url:
            raise PermanentError(f"{endpoint} has no serving process running.")
        try:
            answer = send_command(target.socket_path(revision), {"cmd": "portal_key"}, timeout=5)
        except ControlError as exc:
            raise TransientError(f"{revision} did not answer: {exc}") from None
        if not answer.get("ok"):
            raise PermanentError(
                f"{revision} gives no portal key ({answer.get('error')}): it was started before the "
                "playground existed. Redeploy the current version to call it from here."
            )
        return PortalAccess(
            url=url.rstrip("/"), headers={"x-api-key": answer["key"]}, via="the serving process's portal key"
        )

    def read_log(self, endpoint: str, live: DeploymentResources | None, query: LogQuery) -> LogPage:
        """The serving revision's log file (or, when stopped, the live deployment's), read as
        `worker.runtimes.local.logs` does."""
        target = self.dir.endpoint(endpoint)
        revision = target.current() or (live or {}).get("revision")
        if not revision:
            return LogPage(revision=None)
        return read_log_file(target.log_file(revision), revision, query)

    def scrape_traffic(self) -> list[TrafficSample]:
        """The counters of every running serving process, read over their control sockets (a
        process that does not answer within a second is skipped: the next scrape counts for it).
        Nothing when PROMETHEUS_URL is set: that Prometheus scrapes them instead."""
        if settings.PROMETHEUS_URL:
            return []
        samples = []
        for target in self.dir.endpoints():
            for revision in target.revisions():
                try:
                    answer = send_command(target.socket_path(revision), {"cmd": "metrics"}, timeout=1)
                except ControlError as exc:
                    log.debug("no metrics from %s: %s", revision, exc)
                    continue
                if answer.get("ok"):
                    samples.append(
                        parse_exposition(answer["metrics"], endpoint=target.name, revision=revision)
                    )
        return samples

    def traffic(
        self, endpoint: str, live: DeploymentResources | None, *, start: datetime, end: datetime, step: int
    ) -> Traffic:
        """From the Prometheus server at PROMETHEUS_URL when set, else from the rollups the
        portal's scraper keeps in its database."""
        check_window(start, end, step)
        if settings.PROMETHEUS_URL:
            from worker.runtimes.prometheus import PrometheusReader

            return PrometheusReader(settings.PROMETHEUS_URL).traffic(
                endpoint, start=start, end=end, step=step
            )
        # The scraper's rollups are portal rows: the one place this runtime reads the database.
        from endpoints.services.traffic import rollup_series

        revisions = rollup_series(endpoint=endpoint, start=start, end=end, step=step)
        return Traffic(start, end, step, revisions, source="the portal's scraper")

    def issue_key(self, spec: KeySpec) -> IssuedKey:
        # The secret lives nowhere but in the portal's sealed copy: the access file carries only
        # its hash, so a retried issue simply makes a new secret under the same name.
        secret = "mep_" + secrets.token_urlsafe(32)
        return IssuedKey(name=f"local:{spec.endpoint}:{spec.key_id}", secret=secret)

    def revoke_key(self, endpoint: str, key_name: str) -> None:
        """Nothing to do here: the access file marks the key revoked (see `apply_access`)."""

    def restore_key(self, endpoint: str, key_name: str) -> None:
        """Nothing to do here either: the next `apply_access` writes the key as not revoked."""

    def stop_steps(self, spec: DeploySpec) -> list[Step]:
        """Stop every serving process of the endpoint; its port and access file stay for a start."""
        target = self.dir.endpoint(spec.endpoint)
        return [stop_step(target)]

    def start_steps(self, spec: DeploySpec) -> list[Step]:
        """Serve the live revision again on the endpoint's port, as a deploy starts one."""
        return DeploySteps(self.dir, spec).restart()

    def delete_steps(self, spec: TeardownSpec) -> list[Step]:
        """Stop the processes, remove the endpoint's folder (port, access file, logs), then the
        artifacts only it used."""
        target = self.dir.endpoint(spec.endpoint)

        def remove_files(resources: DeploymentResources) -> StepResult:
            with target.lock():
                port = target.port()
                existed = target.path.exists()
                shutil.rmtree(target.path, ignore_errors=True)
            if not existed:
                return StepResult("The endpoint's files were already gone.")
            freed = f"; port {port} is free again" if port else ""
            return StepResult(f"Removed the endpoint's files (access policy, logs){freed}.")

        def plan_remove_files() -> list[Change]:
            if not target.path.exists():
                return [Change("files", "none", "the endpoint's files are already gone")]
            port = target.port()
            return [
                Change(
                    "files", "delete", f"remove {target.path}" + (f", freeing port {port}" if port else "")
                )
            ]

        def artifacts(resources: DeploymentResources) -> StepResult:
            removed = 0
            for model in spec.artifacts:
                path = self.dir.artifact(model.sha256, model.format)
                if path.exists():
                    path.unlink(missing_ok=True)
                    removed += 1
            return StepResult(f"Removed {removed} artifact(s) no other endpoint uses.")

        def plan_artifacts() -> list[Change]:
            present = [m for m in spec.artifacts if self.dir.artifact(m.sha256, m.format).exists()]
            if not present:
                return [Change("artifacts", "none", "no artifact of its own is left")]
            names = ", ".join(f"{m.name} v{m.version} ({m.sha256[:12]})" for m in present)
            return [Change("artifacts", "delete", f"remove {names}")]

        return [
            stop_step(target),
            Step(
                "files", "Remove the endpoint's port, access file and logs", remove_files, plan_remove_files
            ),
            Step("artifacts", "Remove the artifacts only it used", artifacts, plan_artifacts),
        ]

    def ensure_serving(self, spec: DeploySpec) -> bool:
        target = self.dir.endpoint(spec.endpoint)
        revision = spec.revision
        newer = target.newer_running(spec.deployment_id)
        if newer:  # the portal's view is behind what runs here: never bring an older version back
            log.warning("not reviving %s: %s, a later deployment, serves %s", revision, newer, spec.endpoint)
            return False
        if spec.traffic_percent < 100 and target.current() not in (None, revision):
            return self._ensure_canary(target, spec)
        pid = processes.read_pid_file(target.pid_file(revision))
        if pid is not None:
            try:
                status = send_command(target.socket_path(revision), {"cmd": "status"}, timeout=2)
            except ControlError as exc:
                log.warning("serving process %s of %s does not answer: %s", pid, revision, exc)
                return False
            if status.get("ready") and not status.get("serving"):
                try:
                    send_command(target.socket_path(revision), {"cmd": "serve"}, timeout=SERVE_TIMEOUT)
                except ControlError as exc:
                    raise TransientError(f"{revision} did not take the serve command: {exc}") from None
            if target.current() != revision:
                with target.lock():
                    target.set_current(revision)
            return False
        log.info("the live revision %s of %s is not running: starting it again", revision, spec.endpoint)
        DeploySteps(self.dir, spec).revive()
        return True

    def set_canary_share(self, spec: DeploySpec, percent: int) -> str:
        target, revision = self.dir.endpoint(spec.endpoint), spec.revision
        with target.lock():
            current = target.current()
            if percent < 100:
                if current == revision:
                    raise PermanentError(f"{revision} already serves every request of {spec.endpoint}")
                canary.share(target, stable=current or "", canary=revision, percent=percent)
                return f"{percent}% of the requests go to {revision}, the rest to {current}."
            stable = canary.promote(target, revision) if current != revision or target.canary() else None
            stopped = [
                other
                for other in target.revisions()
                if other != revision
                and deployment_number(other) < spec.deployment_id
                and stop_revision(target, other)
            ]
        after = f"; stopped {', '.join(stopped)}" if stopped else ""
        if stable is None:
            return f"{revision} serves every request{after}."
        return f"{revision} serves every request, {stable} none{after}."

    def end_canary(self, spec: DeploySpec) -> str:
        target, revision = self.dir.endpoint(spec.endpoint), spec.revision
        with target.lock():
            current = target.current()
            if current == revision:
                raise PermanentError(
                    f"{revision} already serves every request of {spec.endpoint}: deploy or roll back instead"
                )
            canary.abort(target, revision)
            stopped = stop_revision(target, revision)
        back = f"every request goes to {current}" if current else "nothing else serves the endpoint"
        return f"{back}; {revision} {'stopped' if stopped else 'had already stopped'}."

    def _ensure_canary(self, target: EndpointDir, spec: DeploySpec) -> bool:
        """A live canary: the current revision keeps the port and forwards the canary its share.
        Its process is started again if it stopped, and the share set again if a restart of either
        lost it. A current revision that is not running is the stable deployment's to revive."""
        revision, stable = spec.revision, target.current()
        if not canary.running(target, stable):
            log.warning(
                "not reviving the canary %s: %s, which it shares the port with, is not running",
                revision,
                stable,
            )
            return False
        if not canary.running(target, revision):
            log.info("the canary %s of %s is not running: starting it again", revision, spec.endpoint)
            DeploySteps(self.dir, spec).revive()
            return True
        with target.lock():
            recorded = target.canary() or {}
            percent = recorded.get("percent") if recorded.get("revision") == revision else None
            canary.share(
                target, stable=stable or "", canary=revision, percent=percent or spec.traffic_percent
            )
        return False

    def warm_up(self) -> None:
        """Start the serving launcher, so the first deploy finds it warm."""
        self.dir.root.mkdir(parents=True, exist_ok=True)
        launcher.warm(self.dir.root, cwd=Path(settings.BASE_DIR))

    def stop_all(self) -> dict[str, list[str]]:
        """Stop every serving process this runtime directory knows of, and its launcher; the
        revisions stopped, by endpoint. The records say what should run: reconcile starts it again."""
        stopped = {target.name: stop_processes(target) for target in self.dir.endpoints()}
        launcher.stop(self.dir.root)
        return {endpoint: revisions for endpoint, revisions in stopped.items() if revisions}


def stop_processes(target: EndpointDir) -> list[str]:
    """Stop every serving process of the endpoint and clear its current revision; the revisions
    stopped."""
    with target.lock():
        stopped = [revision for revision in target.revisions() if stop_revision(target, revision)]
        target.set_current(None)
    return stopped


def stop_step(target: EndpointDir) -> Step:
    """The step that stops every serving process of the endpoint."""

    def stop(resources: DeploymentResources) -> StepResult:
        stopped = stop_processes(target)
        return StepResult(f"Stopped {', '.join(stopped)}." if stopped else "Nothing was running.")

    def plan() -> list[Change]:
        running = target.revisions()
        if not running:
            return [Change("stop", "none", "nothing is running")]
        return [Change("stop", "delete", f"stop {', '.join(running)}")]

    return Step("stop", "Stop the serving processes", stop, plan)
