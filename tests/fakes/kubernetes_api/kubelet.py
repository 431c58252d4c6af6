"""What a kubelet reports in a Pod's status: phase, conditions and container statuses.

A healthy pod is Pending with its containers `ContainerCreating` until it is ready, then Running
and Ready. A failing one reports as kubelets do:

- ImagePullBackOff / ErrImagePull: Pending, `state.waiting.reason` the reason, never started.
- CrashLoopBackOff: Running, `state.waiting.reason` CrashLoopBackOff, `lastState.terminated`
  reason Error (exit code 1), `restartCount` growing.
- OOMKilled: the same back-off, with `lastState.terminated.reason` OOMKilled (exit code 137).
"""

from __future__ import annotations

import json

FAILURES = ("ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "OOMKilled")
NODE = "fake-node-1"
HOST_IP = "10.0.0.10"


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


def pod_status(pod: dict, *, ready: bool, failure: str | None, restarts: int, started: str, now: str) -> dict:
    """The status a kubelet reports for `pod` (failure: one of FAILURES, or None)."""
    containers = pod["spec"]["containers"]
    names = ", ".join(container["name"] for container in containers)
    running = ready and failure is None
    return {
        "phase": "Running" if running or failure in ("CrashLoopBackOff", "OOMKilled") else "Pending",
        "conditions": [
            _condition("PodReadyToStartContainers", True, started),
            _condition("Initialized", True, started),
            *(
                _condition(
                    kind,
                    running,
                    now,
                    reason=None if running else "ContainersNotReady",
                    message=None if running else f"containers with unready status: [{names}]",
                )
                for kind in ("Ready", "ContainersReady")
            ),
            _condition("PodScheduled", True, started),
        ],
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": pod["status"].get("podIP"),
        "podIPs": [{"ip": pod["status"]["podIP"]}] if pod["status"].get("podIP") else [],
        "startTime": started,
        "qosClass": qos_class(containers),
        "containerStatuses": [
            _container_status(
                pod, container, running=running, failure=failure, restarts=restarts, started=started
            )
            for container in containers
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


def _container_status(
    pod: dict, container: dict, *, running: bool, failure: str | None, restarts: int, started: str
) -> dict:
    image, name = container["image"], container["name"]
    pod_name = f"{pod['metadata']['name']}_{pod['metadata']['namespace']}({pod['metadata']['uid']})"
    status: dict = {
        "name": name,
        "image": image,
        "imageID": "",
        "ready": running,
        "started": running,
        "restartCount": 0,
        "state": {},
        "lastState": {},
    }
    container_id = "containerd://" + pod["metadata"]["uid"].replace("-", "") * 2
    pulled = {
        "imageID": f"{image.split('@')[0].split(':')[0]}@sha256:{'0' * 64}",
        "containerID": container_id,
    }
    if running:
        status.update(pulled, state={"running": {"startedAt": started}})
    elif failure == "ImagePullBackOff":
        status["state"] = {"waiting": {"reason": failure, "message": f'Back-off pulling image "{image}"'}}
    elif failure == "ErrImagePull":
        message = (
            f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": failed to '
            f'resolve reference "{image}": {image}: not found'
        )
        status["state"] = {"waiting": {"reason": failure, "message": message}}
    elif failure in ("CrashLoopBackOff", "OOMKilled"):
        backoff = min(10 * 2 ** max(restarts - 1, 0), 300)
        status.update(
            pulled,
            restartCount=restarts,
            state={
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {backoff}s restarting failed container={name} pod={pod_name}",
                }
            },
            lastState={
                "terminated": {
                    "exitCode": 137 if failure == "OOMKilled" else 1,
                    "reason": "OOMKilled" if failure == "OOMKilled" else "Error",
                    "startedAt": started,
                    "finishedAt": started,
                    "containerID": container_id,
                }
            },
        )
    else:
        status["state"] = {"waiting": {"reason": "ContainerCreating"}}
    return status


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
