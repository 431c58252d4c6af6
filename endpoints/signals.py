"""Signal receivers that audit sign-ins and team membership, wherever they happen.

Sign-ins come through the dashboard, Django admin and the token endpoint; membership changes
through Django admin's team and user forms as well as code. Connected in `EndpointsConfig.ready`.
"""

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import m2m_changed
from django.dispatch import receiver

from endpoints.client_address import client_address
from endpoints.models import Team
from endpoints.services import accounts


def _where(request) -> tuple[str, str]:
    if request is None:
        return "", ""
    return client_address(request), request.path


@receiver(user_logged_in, dispatch_uid="endpoints.audit_sign_in")
def audit_sign_in(sender, request, user, **kwargs):
    address, path = _where(request)
    accounts.sign_in_succeeded(user=user, address=address, path=path)


@receiver(user_login_failed, dispatch_uid="endpoints.audit_failed_sign_in")
def audit_failed_sign_in(sender, credentials, request=None, **kwargs):
    address, path = _where(request)
    # Refused because of an existing lock (axes recorded no new failure), not a wrong password.
    locked = bool(getattr(request, "axes_locked_out", False)) and (
        getattr(request, "axes_failures_since_start", None) is None
    )
    username = credentials.get(get_user_model().USERNAME_FIELD)
    accounts.sign_in_failed(
        username=username if isinstance(username, str) else "", address=address, path=path, locked=locked
    )


@receiver(user_locked_out, dispatch_uid="endpoints.audit_lockout")
def audit_lockout(sender, request, username, ip_address, **kwargs):
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None:  # an attempt during a lock, already audited as a failed sign-in
        return
    accounts.sign_in_locked_out(
        username=username if isinstance(username, str) else "",
        address=ip_address or "",
        path=request.path if request is not None else "",
        failures=failures,
    )


@receiver(m2m_changed, sender=Team.members.through, dispatch_uid="endpoints.audit_team_members")
def audit_team_members(sender, instance, action, reverse, model, pk_set, **kwargs):
    """Record who joined or left which team, from either side of the relation."""
    through = Team.members.through
    if action in ("pre_remove", "pre_clear"):
        # Keep the memberships that exist and are about to go, to record them afterwards.
        rows = through.objects.filter(**{"user" if reverse else "team": instance})
        if pk_set is not None:
            rows = rows.filter(**{"team_id__in" if reverse else "user_id__in": pk_set})
        instance._leaving_memberships = list(rows.select_related("team", "user"))
        return
    if action in ("post_remove", "post_clear"):
        rows = getattr(instance, "_leaving_memberships", [])
        instance._leaving_memberships = []
        pairs = [(row.team, row.user) for row in rows]
        change = "remove"
    elif action == "post_add" and pk_set:
        others = model.objects.filter(pk__in=pk_set)
        pairs = [(team, instance) for team in others] if reverse else [(instance, user) for user in others]
        change = "add"
    else:
        return
    by_team: dict = {}
    for team, user in pairs:
        by_team.setdefault(team.pk, (team, []))[1].append(user)
    for team, users in by_team.values():
        accounts.team_members_changed(team=team, action=change, users=users)
