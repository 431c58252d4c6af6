"""The rollout of a progressive deploy as its page shows it."""

from django import template

register = template.Library()


@register.filter
def rollout_progress(deployment) -> list[tuple[int, str]]:
    """Each step's share and where the rollout is with it: done, current, next or skipped."""
    percent, status = deployment.rollout_percent, deployment.rollout_status
    stopped = status in ("rolled_back", "ended")
    progress = []
    for step in deployment.rollout_steps:
        if step < percent or (step == percent and status == "complete"):
            state = "done"
        elif step == percent:
            state = "failed" if status == "rolled_back" else "current"
        else:
            state = "skipped" if stopped else "next"
        progress.append((step, state))
    return progress


@register.filter
def rollout_last_word(deployment) -> str:
    """The newest rollout entry of the journal: the guard's last word."""
    entries = [step for step in deployment.steps if step.get("step", "").startswith("rollout_")]
    return entries[-1]["message"] if entries else ""
