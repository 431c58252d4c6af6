"""The `memory` runtime: endpoints held in this process's memory, for tests and trying the portal.

Like Django's locmem mail backend, it does everything a runtime does, but nowhere: a deploy
"serves" at `http://<revision>.memory.invalid`, keys and policies are kept in dictionaries, and
every call is recorded. It can be told to fail:

    runtime = get_runtime()                      # with RUNTIME="memory"
    runtime.fail("revision", Pending("still creating"), TransientError("busy"))
    ...                                          # the next two runs of the step raise these
    runtime.slow("switch", 3.0)                  # the next run of the step takes 3 s
    runtime.calls                                # [("deploy_step", "artifact", "iris-d1"), ...]

Failures (PermanentError, TransientError, Pending, ...) can be queued for a step name or for a
method name (`issue_key`, `revoke_key`, `restore_key`, `apply_access`, `stop`,
`start`, `delete`, `ensure_serving`). Nothing is kept across processes.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime

from worker.runtimes.base import (
    AccessPolicy,
    Change,
    DeploySpec,
    IssuedKey,
    KeySpec,
    Runtime,
    Step,
    StepResult,
    TeardownSpec,
)
from worker.runtimes.logs import LogEntry, LogPage, LogQuery, LogQueryError
from worker.runtimes.resources import DeploymentResources
from worker.runtimes.traffic import RevisionTraffic, Traffic, TrafficPoint, check_window


@dataclass
class Served:
    """What an endpoint serves: its revisions by share of traffic, and whether it is up."""

    url: str
    traffic: dict[str, int]
    up: bool = True


class MemoryRuntime(Runtime):
    name = "memory"
    supports_canary = True

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.runs: Counter[str] = Counter()  # how many times each step or method ran
        self.failures: defaultdict[str, list[Exception]] = defaultdict(list)
        self.delays: dict[str, float] = {}
        self.endpoints: dict[str, Served] = {}
        self.access: dict[str, AccessPolicy] = {}
        self.keys: dict[str, bool] = {}  # key name -> revoked
        self.logs: defaultdict[str, list[LogEntry]] = defaultdict(list)  # by revision
        self.warmed = False
        self.reported: defaultdict[str, dict[str, list[TrafficPoint]]] = defaultdict(dict)

    def fail(self, name: str, *errors: Exception) -> None:
        """Make the next runs of the step or method `name` raise `errors`, one per run, in order."""
        self.failures[name].extend(errors)

    def slow(self, name: str, seconds: float) -> None:
        """Make the next run of the step or method `name` take `seconds`."""
        self.delays[name] = seconds

    def crash(self, endpoint: str) -> None:
        """Stop serving `endpoint` behind the portal's back, as a machine restart would."""
        self.endpoints[endpoint].up = False

    def _enter(self, name: str, *args) -> None:
        self.calls.append((name, *args))
        self.runs[name] += 1
        time.sleep(self.delays.pop(name, 0))
        if self.failures[name]:
            raise self.failures[name].pop(0)

    # --- progressive deploys ------------------------------------------------------------------

    def report_traffic(self, endpoint: str, revision: str, points: list[TrafficPoint]) -> None:
        """Make `traffic` report these points for the revision (each at its own start)."""
        self.reported[endpoint][revision] = list(points)

    def traffic(
        self, endpoint: str, live: DeploymentResources | None, *, start: datetime, end: datetime, step: int
    ) -> Traffic:
        """What `report_traffic` was given, in steps of `step` seconds from `start` to `end`."""
        check_window(start, end, step)
        self._enter("traffic", endpoint)
        revisions = []
        for revision, points in self.reported[endpoint].items():
            inside = [point for point in points if start <= point.start < end]
            if inside:
                merged = TrafficPoint(
                    start=start,
                    ok=sum(point.ok for point in inside),
                    client_errors=sum(point.client_errors for point in inside),
                    server_errors=sum(point.server_errors for point in inside),
                    p99=max((point.p99 for point in inside if point.p99 is not None), default=None),
                )
                revisions.append(RevisionTraffic(revision, (merged,)))
        return Traffic(start, end, step, tuple(revisions), source="the memory runtime")

    def set_canary_share(self, spec: DeploySpec, percent: int) -> str:
        self._enter("set_canary_share", spec.revision, percent)
        served = self.endpoints[spec.endpoint]
        previous = spec.previous.get("revision")
        served.traffic = {spec.revision: percent}
        if percent < 100 and previous:
            served.traffic[previous] = 100 - percent
        return f"{spec.revision} takes {percent}%."

    def end_canary(self, spec: DeploySpec) -> str:
        self._enter("end_canary", spec.revision)
        previous = spec.previous.get("revision") or ""
        self.endpoints[spec.endpoint].traffic = {previous: 100}
        return f"{previous} takes every request again."

    # --- deploy ------------------------------------------------------------------------------

    def deploy_steps(self, spec: DeploySpec) -> list[Step]:
        revision = spec.rollback_to.get("revision") or spec.revision
        url = f"http://{spec.endpoint}.memory.invalid"

        def artifact(resources: DeploymentResources) -> StepResult:
            self._enter("artifact", revision)
            return StepResult(f"Artifact {spec.model.sha256[:12]} kept in memory.")

        def start(resources: DeploymentResources) -> StepResult:
            self._enter("revision", revision)
            return StepResult(f"{revision} is ready.", {"revision": revision})

        def switch(resources: DeploymentResources) -> StepResult:
            self._enter("switch", revision)
            traffic = {revision: spec.traffic_percent}
            served = self.endpoints.get(spec.endpoint)
            if served and spec.traffic_percent < 100:
                rest = 100 - spec.traffic_percent
                traffic.update({name: rest for name in served.traffic if name != revision})
            self.endpoints[spec.endpoint] = Served(url, traffic)
            self.access[spec.endpoint] = spec.access
            return StepResult(f"{url} answers from {revision}.", {"url": url, "revision": revision})

        def says(step: str, action: str, detail: str):
            return lambda: [Change(step, action, detail)]

        return [
            Step("artifact", "Keep the model artifact", artifact, says("artifact", "none", "kept in memory")),
            Step("revision", "Start the revision", start, says("revision", "create", f"start {revision}")),
            Step(
                "switch",
                "Send traffic to it",
                switch,
                says("switch", "update", f"{url} answers from {revision}"),
            ),
        ]

    def ensure_serving(self, spec: DeploySpec) -> bool:
        self._enter("ensure_serving", spec.endpoint)
        served = self.endpoints.get(spec.endpoint)
        if served is not None and served.up:
            return False
        self.endpoints[spec.endpoint] = Served(f"http://{spec.endpoint}.memory.invalid", {spec.revision: 100})
        return True

    def stop_steps(self, spec: DeploySpec) -> list[Step]:
        def stop(resources: DeploymentResources) -> StepResult:
            self._enter("stop", spec.endpoint)
            if spec.endpoint in self.endpoints:
                self.endpoints[spec.endpoint].up = False
            return StepResult(f"{spec.endpoint} stopped.")

        return [
            Step("stop", "Stop serving", stop, lambda: [Change("stop", "update", f"stop {spec.endpoint}")])
        ]

    def start_steps(self, spec: DeploySpec) -> list[Step]:
        def start(resources: DeploymentResources) -> StepResult:
            self._enter("start", spec.endpoint)
            served = self.endpoints.setdefault(
                spec.endpoint, Served(f"http://{spec.endpoint}.memory.invalid", {spec.revision: 100})
            )
            served.up = True
            return StepResult(f"{spec.endpoint} serves {', '.join(served.traffic)} again.")

        return [
            Step("start", "Serve again", start, lambda: [Change("start", "update", f"start {spec.endpoint}")])
        ]

    def delete_steps(self, spec: TeardownSpec) -> list[Step]:
        def delete(resources: DeploymentResources) -> StepResult:
            self._enter("delete", spec.endpoint)
            existed = self.endpoints.pop(spec.endpoint, None) is not None
            self.access.pop(spec.endpoint, None)
            for name in spec.key_names:
                self.keys.pop(name, None)
            return StepResult(f"{spec.endpoint} {'deleted' if existed else 'was already gone'}.")

        def plan() -> list[Change]:
            if spec.endpoint not in self.endpoints:
                return [Change("delete", "none", f"{spec.endpoint} is already gone")]
            return [Change("delete", "delete", f"delete {spec.endpoint} and {len(spec.key_names)} key(s)")]

        return [Step("delete", "Delete everything", delete, plan)]

    def warm_up(self) -> None:
        self.warmed = True

    # --- access ------------------------------------------------------------------------------

    def apply_access(self, endpoint: str, access: AccessPolicy) -> None:
        self._enter("apply_access", endpoint)
        self.access[endpoint] = access

    def issue_key(self, spec: KeySpec) -> IssuedKey:
        self._enter("issue_key", spec.key_id)
        name = f"memory:{spec.endpoint}:{spec.key_id}"
        self.keys[name] = False
        return IssuedKey(name=name, secret="mep_" + secrets.token_urlsafe(32))

    def revoke_key(self, endpoint: str, key_name: str) -> None:
        self._enter("revoke_key", key_name)
        self.keys[key_name] = True

    def restore_key(self, endpoint: str, key_name: str) -> None:
        self._enter("restore_key", key_name)
        self.keys[key_name] = False

    # --- logs --------------------------------------------------------------------------------

    def write_log(self, revision: str, entry: LogEntry) -> None:
        """Add an entry to a revision's log, as its serving process would write one."""
        self.logs[revision].append(entry)

    def read_log(self, endpoint: str, live: DeploymentResources | None, query: LogQuery) -> LogPage:
        """The live revision's entries, paged as the local runtime pages its file (by index)."""
        self._enter("read_log", endpoint)
        revision = (live or {}).get("revision")
        if not revision:
            return LogPage(revision=None)
        entries = self.logs[revision]
        start = None
        if query.after:
            after_revision, _, number = query.after.rpartition(":")
            if not after_revision or not number.isdigit():
                raise LogQueryError("the cursor is not one this log gave")
            if after_revision == revision and int(number) <= len(entries):
                start = int(number)
        if start is None:
            matched = [entry for entry in entries if query.matches(entry)]
            shown = matched[-query.limit :]
            return LogPage(revision, tuple(shown), f"{revision}:{len(entries)}", len(matched) > len(shown))
        shown, end = [], len(entries)
        for index in range(start, len(entries)):
            if query.matches(entries[index]):
                if len(shown) == query.limit:
                    end = index
                    break
                shown.append(entries[index])
        return LogPage(revision, tuple(shown), f"{revision}:{end}", end < len(entries))
