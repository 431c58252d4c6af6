"""The HPA controller, as far as it acts without metrics."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from tests.fakes.kubernetes_api.kinds import BY_KIND

if TYPE_CHECKING:
    from tests.fakes.kubernetes_api.workloads import Workloads

DEPLOYMENT, HPA = BY_KIND["Deployment"], BY_KIND["HorizontalPodAutoscaler"]


def sync_hpa(workloads: Workloads, hpa: dict) -> None:
    """Keep the target's replicas within [minReplicas, maxReplicas], as the HPA controller does
    before it looks at metrics; the fake has no metrics server, so within the bounds it reports
    ScalingActive False (FailedGetResourceMetric) and leaves the count alone."""
    spec, meta = hpa["spec"], hpa["metadata"]
    target = spec["scaleTargetRef"]
    now = workloads.cluster.stamp()
    status = copy.deepcopy(hpa.get("status") or {})
    found = workloads.cluster.objects.get(("Deployment", meta["namespace"], target["name"]))
    conditions: list[tuple[str, str, str, str]] = []
    if target["kind"] != "Deployment" or found is None:
        conditions.append(
            (
                "AbleToScale",
                "False",
                "FailedGetScale",
                f"the HPA controller was unable to get the target's current scale: "
                f'{target["kind"].lower()}s.apps "{target["name"]}" not found',
            )
        )
    else:
        current = found["spec"]["replicas"]
        desired = min(max(current, spec["minReplicas"]), spec["maxReplicas"])
        if current == 0:
            desired = 0
            conditions.append(
                (
                    "ScalingActive",
                    "False",
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                )
            )
        elif desired != current:
            below = desired > current
            found["spec"]["replicas"] = desired
            found["metadata"]["generation"] += 1
            workloads.cluster.put(DEPLOYMENT, found)
            why = "below Spec.MinReplicas" if below else "above Spec.MaxReplicas"
            workloads.event(
                hpa,
                "Normal",
                "SuccessfulRescale",
                "horizontal-pod-autoscaler",
                f"New size: {desired}; reason: Current number of replicas {why}",
            )
            status["lastScaleTime"] = now
        else:
            conditions.append(
                (
                    "ScalingActive",
                    "False",
                    "FailedGetResourceMetric",
                    "the HPA was unable to compute the replica count: failed to get cpu "
                    "utilization: unable to get metrics for resource cpu: no metrics returned "
                    "from resource metrics API",
                )
            )
        conditions.insert(
            0,
            (
                "AbleToScale",
                "True",
                "SucceededGetScale",
                "the HPA controller was able to get the target's current scale",
            ),
        )
        status.update(currentReplicas=found.get("status", {}).get("replicas", 0), desiredReplicas=desired)
    before = {c["type"]: c for c in status.get("conditions") or []}
    status["conditions"] = [
        {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": before[kind]["lastTransitionTime"]
            if kind in before and before[kind]["status"] == value
            else now,
        }
        for kind, value, reason, message in conditions
    ]
    if status != hpa.get("status"):
        hpa["status"] = status
        workloads.cluster.put(HPA, hpa)
