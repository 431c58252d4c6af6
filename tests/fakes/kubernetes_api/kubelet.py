"""What a kubelet reports in a Pod's status: phase, conditions and container statuses.

A container's state is a `Run`: a healthy one is `ContainerCreating` until it starts, then running
(Ready once its readiness holds). A failing one reports as kubelets do:

- ImagePullBackOff / ErrImagePull: Pending, `state.waiting.reason` the reason, never started.
- CrashLoopBackOff: Running, `state.waiting.reason` CrashLoopBackOff, `lastState.terminated`
  reason Error with the exit code (1 unless the run says), `restartCount` growing.
- OOMKilled: the same back-off, with `lastState.terminated.reason` OOMKilled (exit code 137).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

FAILURES = ("ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "OOMKilled")
NODE = "fake-node-1"
HOST_IP = "10.0.0.10"


@dataclass(frozen=True)
class Run:
    """A container's state: started (running now), ready, the failure it shows (one of FAILURES,
    or another waiting reason with its message), its restarts and the exit code of its last run
    that ended (None: none has)."""

    started: bool = False
    ready: bool = False
    failure: str | None = None
    restarts: int = 0
    exit_code: int | None = None
    message: str = ""  # why it waits, for a failure other than FAILURES (CreateContainerConfigError)


def qos_class(containers: list[dict]) -> str:
    resources = [container.get("resources") or {} for container in containers]
    if not any(part.get("requests") or part.get("limits") for part in resources):
        return "BestEffort"
    guaranteed = all(
        set(part.get("limits") or {}) >= {"cpu", "memory"}
        and all(
            (part.get("limits") or {}).get(name) == value
            for name, value in (part.get("requests") or {}).items()
        )
        for part in resources
    )
    return "Guaranteed" if guaranteed else "Burstable"


def pod_status(pod: dict, run: Run, *, since: str, now: str) -> dict:
    """The status a kubelet reports for `pod`, whose containers are in `run` since `since`."""
    containers = pod["spec"]["containers"]
    names = ", ".join(container["name"] for container in containers)
    ready = run.ready and run.started and run.failure is None
    crashing = run.failure in ("CrashLoopBackOff", "OOMKilled")
    return {
        "phase": "Running" if run.started or crashing else "Pending",
        "conditions": [
            _condition("PodReadyToStartContainers", True, since),
            _condition("Initialized", True, since),
            *(
                _condition(
                    kind,
                    ready,
                    now,
                    reason=None if ready else "ContainersNotReady",
                    message=None if ready else f"containers with unready status: [{names}]",
                )
                for kind in ("Ready", "ContainersReady")
            ),
            _condition("PodScheduled", True, since),
        ],
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": pod["status"].get("podIP"),
        "podIPs": [{"ip": pod["status"]["podIP"]}] if pod["status"].get("podIP") else [],
        "startTime": since,
        "qosClass": qos_class(containers),
        "containerStatuses": [
            _container_status(pod, container, run, since=since) for container in containers
        ],
    }


def _condition(
    kind: str, true: bool, when: str, *, reason: str | None = None, message: str | None = None
) -> dict:
    condition = {
        "type": kind,
        "status": "True" if true else "False",
        "lastProbeTime": None,
        "lastTransitionTime": when,
    }
    if reason:
        condition.update(reason=reason, message=message)
    return condition


def _container_status(pod: dict, container: dict, run: Run, *, since: str) -> dict:
    image, name = container["image"], container["name"]
    pod_name = f"{pod['metadata']['name']}_{pod['metadata']['namespace']}({pod['metadata']['uid']})"
    container_id = "containerd://" + pod["metadata"]["uid"].replace("-", "") * 2
    pulled = {"imageID": f"{_repository(image)}@sha256:{'0' * 64}", "containerID": container_id}
    status: dict = {
        "name": name,
        "image": image,
        "imageID": "",
        "ready": run.ready and run.started and run.failure is None,
        "started": run.started,
        "restartCount": run.restarts,
        "state": {},
        "lastState": {},
    }
    oom = run.failure == "OOMKilled"
    exit_code = 137 if oom else (run.exit_code if run.exit_code is not None else 1)
    if run.failure in ("CrashLoopBackOff", "OOMKilled") or (run.started and run.exit_code is not None):
        status["lastState"] = {
            "terminated": {
                "exitCode": exit_code,
                "reason": "OOMKilled" if oom else ("Completed" if exit_code == 0 else "Error"),
                "startedAt": since,
                "finishedAt": since,
                "containerID": container_id,
            }
        }
    if run.failure in ("ImagePullBackOff", "ErrImagePull"):
        status["state"] = {"waiting": {"reason": run.failure, "message": _pull_message(run.failure, image)}}
    elif run.failure in ("CrashLoopBackOff", "OOMKilled"):
        backoff = min(10 * 2 ** max(run.restarts - 1, 0), 300)
        message = f"back-off {backoff}s restarting failed container={name} pod={pod_name}"
        status.update(pulled, state={"waiting": {"reason": "CrashLoopBackOff", "message": message}})
    elif run.failure:
        status["state"] = {"waiting": {"reason": run.failure, "message": run.message}}
    elif run.started:
        status.update(pulled, state={"running": {"startedAt": since}})
    else:
        status["state"] = {"waiting": {"reason": "ContainerCreating"}}
    return status


def _pull_message(reason: str, image: str) -> str:
    if reason == "ImagePullBackOff":
        return f'Back-off pulling image "{image}"'
    return (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": failed to '
        f'resolve reference "{image}": {image}: not found'
    )


def _repository(image: str) -> str:
    """`registry:5000/team/app` of `registry:5000/team/app:1.2` (or of `...@sha256:...`)."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def pod_ready(pod: dict) -> bool:
    return _ready(pod["status"])


def _ready(status: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])


def kubelet_view(status: dict) -> tuple:
    """What a new report changes: phase, readiness and each container's state and restarts."""
    containers = [
        (c.get("ready"), json.dumps(c.get("state"), sort_keys=True), c.get("restartCount"))
        for c in status.get("containerStatuses") or []
    ]
    return (status.get("phase"), _ready(status), tuple(containers))
