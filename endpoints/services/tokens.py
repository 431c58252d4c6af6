"""REST API tokens: issued at sign-in, listed and revoked by their owner or an admin.

Only a token's SHA-512 digest is stored (django-rest-knox); the secret is shown once, in the
answer to `POST /api/v1/auth/token/`. Tokens expire API_TOKEN_DAYS after they are issued.

    token, secret = api_token_issue(user=user, address="203.0.113.7")
    api_token_revoke(user=user, token=token)
"""

from django.db import transaction

from endpoints.models import ApiToken
from endpoints.services.audit import audit_record
from endpoints.services.errors import NotAllowed, ServiceError


def api_token_issue(*, user, address: str = "") -> tuple[ApiToken, str]:
    """Issue `user` a new token; return it with its secret, which is not stored."""
    if not (user and user.is_authenticated and user.is_active):
        raise NotAllowed()
    with transaction.atomic():
        token, secret = ApiToken.objects.create(user=user)
        audit_record(
            actor=user,
            action="api_token.issue",
            target=token,
            details={
                "prefix": token.prefix,
                "owner": user.get_username(),
                "expiry": token.expiry.isoformat() if token.expiry else None,
                "address": address,
            },
        )
    return token, secret


def api_token_revoke(*, user, token: ApiToken) -> None:
    """Revoke a token: its owner or an admin may; calls using it are refused from now on."""
    if not (user and user.is_authenticated and (user.is_staff or token.user_id == user.pk)):
        raise NotAllowed("Only the token's owner or an admin can revoke it.")
    with transaction.atomic():
        audit_record(
            actor=user,
            action="api_token.revoke",
            target=token,
            details={"prefix": token.prefix, "owner": token.user.get_username()},
        )
        deleted, _ = ApiToken.objects.filter(pk=token.pk).delete()
        if not deleted:
            raise ServiceError("This token is already revoked.", code="conflict")
