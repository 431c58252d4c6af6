"""Following a Deployment's rollout: bounded polling on its status and conditions, the pods' own
reasons when it never gets ready, and putting the previous revision's template back.

A rollout is done as `kubectl rollout status` judges it: the controller has seen the latest spec
(observedGeneration), every replica runs the new template (updatedReplicas), no old replica is
left (replicas), and every new one is available. It has failed when the controller says so: the
Progressing condition's reason ProgressDeadlineExceeded, set once progressDeadlineSeconds pass
without progress. One run of a waiting step polls for at most KUBERNETES_WAIT_SECONDS, then gives
the worker back (Pending); past the progress deadline and a margin with no verdict, it fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.runtimes.base import Pending, PermanentError, RuntimeFailure
from worker.runtimes.kubernetes import manifests
from worker.runtimes.kubernetes.api import Kube, Manifest

#: What the pods' reasons mean, in words an admin acts on.
REASONS = {
    "ImagePullBackOff": "the image cannot be pulled (check KUBERNETES_IMAGE and the registry's credentials)",
    "ErrImagePull": "the image cannot be pulled (check KUBERNETES_IMAGE and the registry's credentials)",
    "InvalidImageName": "the image name is not valid (KUBERNETES_IMAGE)",
    "CrashLoopBackOff": "the serving container keeps exiting (read its log)",
    "Error": "the serving container exited with an error (read its log)",
    "OOMKilled": "the serving container ran out of memory (raise the endpoint's memory)",
    "CreateContainerConfigError": "the container cannot be set up (a Secret or volume it needs is missing)",
    "Unschedulable": "no node has room for a pod of this size (lower the CPU or memory, or add nodes)",
}
#: How many of a failed pod's last lines a failed rollout's message carries.
LOG_TAIL_LINES = 5
#: How long after the progress deadline a rollout with no verdict from the controller is given up.
DEADLINE_MARGIN_SECONDS = 120.0


def template_revision(deployment: Manifest) -> str | None:
    labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
    return labels.get(manifests.REVISION_LABEL)


def condition(deployment: Manifest, kind: str) -> dict:
    for found in (deployment.get("status") or {}).get("conditions") or ():
        if found.get("type") == kind:
            return found
    return {}


def state(deployment: Manifest) -> str:
    """done, failed, or what the rollout still waits for."""
    status = deployment.get("status") or {}
    wanted = deployment["spec"].get("replicas", 1)
    if status.get("observedGeneration", 0) < deployment["metadata"].get("generation", 0):
        return "the Deployment controller has not seen the new template yet"
    if condition(deployment, "Progressing").get("reason") == "ProgressDeadlineExceeded":
        return "failed"
    updated = status.get("updatedReplicas", 0)
    if updated < wanted:
        return f"{updated} of {wanted} new pod(s) made"
    if status.get("replicas", 0) > updated:
        return f"{status.get('replicas', 0) - updated} old pod(s) still to go"
    if status.get("availableReplicas", 0) < updated:
        return f"{status.get('availableReplicas', 0)} of {updated} new pod(s) ready"
    return "done"


def pod_reasons(kube: Kube, endpoint: str, revision: str | None) -> list[str]:
    """Why the revision's pods do not get ready, as the kubelet and the scheduler say it."""
    selector = manifests.selector(endpoint)
    if revision:
        selector[manifests.REVISION_LABEL] = revision
    reasons: dict[str, str] = {}
    for pod in kube.list("Pod", selector):
        status = pod.get("status") or {}
        for cond in status.get("conditions") or ():
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                reasons.setdefault(cond.get("reason") or "Unschedulable", cond.get("message") or "")
        for container in status.get("containerStatuses") or ():
            for where in ("state", "lastState"):
                for phase in ("waiting", "terminated"):
                    found = (container.get(where) or {}).get(phase) or {}
                    reason = found.get("reason")
                    if reason and reason not in ("Completed", "ContainerCreating", "PodInitializing"):
                        code = found.get("exitCode")
                        detail = found.get("message") or (f"exit code {code}" if code is not None else "")
                        reasons.setdefault(reason, detail)
    return [
        f"{reason}: {REASONS.get(reason, 'see the pod events')}" + (f" ({detail})" if detail else "")
        for reason, detail in reasons.items()
    ]


def log_tail(kube: Kube, endpoint: str, revision: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines one of the revision's pods printed: the run that exited, for a container
    that restarts (`previous`). Only for a message: a log that cannot be read gives ""."""
    selector = {**manifests.selector(endpoint), manifests.REVISION_LABEL: revision}
    for pod in kube.list("Pod", selector):
        statuses = (pod.get("status") or {}).get("containerStatuses") or ()
        restarted = any(status.get("restartCount") for status in statuses)
        name = pod["metadata"]["name"]
        try:
            text = kube.log(
                name, what=f"Read the log of pod {name}", container=manifests.CONTAINER, previous=restarted,
                tail_lines=lines,
            )  # fmt: skip
        except RuntimeFailure:
            continue
        if text.strip():
            return text.rstrip()
    return ""


class DeadlinePassed(PermanentError):
    """A wait went past its deadline with no verdict."""


def wait(kube: Kube, read: Callable[[], Any], *, what: str, started: float, deadline: float) -> Any:
    """Call `read()` every poll interval until it returns something other than None: for at most
    KUBERNETES_WAIT_SECONDS in this worker (then Pending), and fail `deadline` s after `started`."""
    cfg = kube.cfg
    give_back_at = kube.clock() + cfg.wait_seconds
    while True:
        found = read()
        if found is not None:
            return found
        waited = kube.wall() - started
        if waited > deadline:
            raise DeadlinePassed(f"{what}: still not done after {waited:.0f} s.")
        if kube.clock() + cfg.poll_interval > give_back_at:
            raise Pending(f"{what}: still in progress.", retry_after=cfg.poll_interval)
        kube.sleep(cfg.poll_interval)


def undo(kube: Kube, endpoint: str, failed: str, previous: str | None) -> str:
    """Put the previous revision's pod template back (as `kubectl rollout undo` does: its
    ReplicaSet still holds it, and still serves, since maxUnavailable is 0), or, with nothing
    before, scale the failed revision to no pod; says what was done."""
    template = None
    if previous:
        for replica_set in kube.list("ReplicaSet", manifests.selector(endpoint)):
            if template_revision(replica_set) == previous:
                template = replica_set["spec"]["template"]
                template["metadata"].get("labels", {}).pop("pod-template-hash", None)
                break

    def change(current: Manifest | None) -> Manifest | None:
        if current is None or template_revision(current) != failed:
            return None  # gone, or another deploy has replaced it meanwhile
        if template is not None:
            current["spec"]["template"] = template
        else:
            current["spec"]["replicas"] = 0
        return current

    kube.write({"kind": "Deployment", "metadata": {"name": endpoint}}, change)
    if template is not None:
        return f"{previous} keeps serving: the Deployment is back on its template."
    if previous:
        return f"The ReplicaSet of {previous} is gone, so {failed} stays the Deployment's template."
    return "Nothing served before it: the Deployment is scaled to no pod."


def wait_rollout(kube: Kube, endpoint: str, revision: str | None, started: float) -> str:
    """Wait until the Deployment's rollout (of `revision`, or of whatever its template is) is done;
    returns the revision. On ProgressDeadlineExceeded the previous revision's template is put back
    and the deploy fails with the pods' reasons."""
    name = manifests.check_name(endpoint)
    deadline = kube.cfg.progress_deadline + DEADLINE_MARGIN_SECONDS

    def read() -> str | None:
        current = kube.read("Deployment", name)
        if current is None:
            raise PermanentError(f"The Deployment {name} was deleted during the rollout.")
        serving = template_revision(current)
        if revision and serving != revision:
            raise PermanentError(
                f"{revision} no longer is the Deployment's template ({serving} is): a later deploy or an "
                "undo replaced it."
            )
        verdict = state(current)
        if verdict == "failed":
            message = condition(current, "Progressing").get("message", "")
            raise _never_ready(kube, endpoint, serving or name, message, current)
        return serving or name if verdict == "done" else None

    try:
        return wait(kube, read, what=f"Roll out {revision or name}", started=started, deadline=deadline)
    except DeadlinePassed as exc:
        current = kube.read("Deployment", name)
        raise _never_ready(kube, endpoint, revision or name, str(exc), current) from None


def _never_ready(
    kube: Kube, endpoint: str, revision: str, message: str, current: Manifest | None
) -> PermanentError:
    reasons = pod_reasons(kube, endpoint, revision)
    tail = log_tail(kube, endpoint, revision)
    previous = ((current or {}).get("metadata", {}).get("annotations") or {}).get(
        manifests.PREVIOUS_ANNOTATION
    )
    undone = undo(kube, endpoint, revision, previous)
    why = "; ".join(reasons) or "its pods gave no reason"
    return PermanentError(
        f"{revision} never became ready within {kube.cfg.progress_deadline} s (ProgressDeadlineExceeded"
        f"{': ' + message if message else ''}). Pods: {why}. {undone}"
        + (f" The last lines a pod printed:\n{tail}" if tail else "")
    )
