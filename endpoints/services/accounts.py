"""Audit rows for sign-ins and team membership, recorded from Django's and django-axes' signals.

These changes also happen outside our views (Django admin's login and its team form), so the
signal receivers in `endpoints.signals` call these functions; the actor is who signed in, or who
`audit_actor` names, or unknown.
"""

from django.contrib.auth import get_user_model

from endpoints.models import Team
from endpoints.services.audit import audit_record, current_actor

#: Longest user name kept from a failed attempt (it is whatever the client typed).
USERNAME_KEPT = 150


def _user_named(username: str):
    if not username:
        return None
    return get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()


def _attempt(action: str, *, username: str, address: str, path: str, extra: dict | None = None) -> None:
    username = (username or "")[:USERNAME_KEPT]
    user = _user_named(username)
    audit_record(
        actor=None,
        action=action,
        target=user,
        target_type="User",
        target_repr=username or "(no user name)",
        details={"username": username, "address": address, "path": path, **(extra or {})},
    )


def sign_in_succeeded(*, user, address: str, path: str) -> None:
    audit_record(
        actor=user,
        action="sign_in.success",
        target=user,
        target_type="User",
        details={"address": address, "path": path},
    )


def sign_in_failed(*, username: str, address: str, path: str, locked: bool) -> None:
    """A wrong password, an unknown user name, or any attempt while locked out."""
    _attempt("sign_in.fail", username=username, address=address, path=path, extra={"locked": locked})


def sign_in_locked_out(*, username: str, address: str, path: str, failures: int) -> None:
    """The failure that locked a user name or an address out."""
    _attempt("sign_in.lockout", username=username, address=address, path=path, extra={"failures": failures})


def team_members_changed(*, team: Team, action: str, users) -> None:
    """Members added to or removed from a team, by whoever `audit_actor` names (else unknown)."""
    names = sorted(user.get_username() for user in users)
    if not names:
        return
    audit_record(
        actor=current_actor(),
        action=f"team.member_{action}",
        target=team,
        details={"members": names},
    )
