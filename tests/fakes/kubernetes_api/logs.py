"""A pod's log as the API server serves it from the kubelet (`GET .../pods/{name}/log`).

The fake runs no container, so a test writes the lines (`FakeKubernetes.write_log`); each is
stamped with the cluster's clock, and the query options work as `kubectl logs` uses them:
`container` (required when the pod has more than one), `timestamps` (RFC 3339 with nanoseconds
before each line), `tailLines`, `sinceSeconds`, `sinceTime`, `limitBytes`, `previous`.

A container that never started has no log: the answer is 400 BadRequest, `container "app" in pod
"web-..." is waiting to start: ContainerCreating` (or `trying and failing to pull image`). A
crash-looping container's log is its last run's; `previous` asks for the run before (its lines
here too, since the fake keeps one log per container).
"""

from __future__ import annotations

from datetime import UTC, datetime

from tests.fakes.kubernetes_api.status import bad_request
from tests.fakes.kubernetes_api.times import parse_time

#: What a waiting container's log answer says, by its waiting reason (the kubelet's words).
WAITING = {
    "ImagePullBackOff": "trying and failing to pull image",
    "ErrImagePull": "trying and failing to pull image",
}


def nano_stamp(seconds: float) -> str:
    whole = int(seconds)
    return (
        datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        + f".{round((seconds - whole) * 1e9):09d}Z"
    )


def container_of(pod: dict, name: str | None) -> str:
    names = [container["name"] for container in pod["spec"]["containers"]]
    pod_name = pod["metadata"]["name"]
    if name is None:
        if len(names) > 1:
            raise bad_request(
                f"a container name must be specified for pod {pod_name}, choose one of: [{' '.join(names)}]"
            )
        return names[0]
    if name not in names:
        raise bad_request(f"container {name} is not valid for pod {pod_name}")
    return name


def pod_log(pod: dict, lines: list[tuple[float, str]], query: dict[str, str], now: float) -> bytes:
    """The body of the answer to a log read of `pod`, whose container wrote `lines` (time, text)."""
    container = container_of(pod, query.get("container"))
    status = next(
        (s for s in pod["status"].get("containerStatuses") or [] if s["name"] == container), {"state": {}}
    )
    waiting = (status.get("state") or {}).get("waiting")
    started = "running" in (status.get("state") or {}) or status.get("lastState", {}).get("terminated")
    if waiting and not started:
        reason = WAITING.get(waiting["reason"], waiting["reason"])
        raise bad_request(
            f'container "{container}" in pod "{pod["metadata"]["name"]}" is waiting to start: {reason}'
        )
    if query.get("previous") == "true" and not status.get("restartCount"):
        raise bad_request(
            f'previous terminated container "{container}" in pod "{pod["metadata"]["name"]}" not found'
        )
    chosen = list(lines)
    if "sinceSeconds" in query:
        chosen = [line for line in chosen if line[0] >= now - int(query["sinceSeconds"])]
    elif "sinceTime" in query:
        try:
            since = parse_time(query["sinceTime"][:19] + "Z")
        except ValueError:
            raise bad_request(
                f'sinceTime: Invalid value: "{query["sinceTime"]}": not an RFC 3339 time'
            ) from None
        chosen = [line for line in chosen if line[0] >= since]
    if "tailLines" in query:
        tail = int(query["tailLines"])
        chosen = chosen[-tail:] if tail else []
    stamped = query.get("timestamps") == "true"
    body = "".join(
        f"{nano_stamp(moment)} {text}\n" if stamped else f"{text}\n" for moment, text in chosen
    ).encode()
    if "limitBytes" in query:
        body = body[: int(query["limitBytes"])]
    return body
