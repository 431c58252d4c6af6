"""API tokens in the dashboard: each user lists and revokes their own; admins everyone's."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render

from endpoints.models import ApiToken
from endpoints.services.errors import ServiceError
from endpoints.services.tokens import api_token_revoke
from endpoints.views.common import flash_error, paginate, post_only


@login_required
def token_list(request):
    tokens = ApiToken.objects.for_user(request.user).select_related("user")
    return render(request, "endpoints/token_list.html", {"page": paginate(request, tokens)})


@post_only("endpoints:token-list")
@login_required
def token_revoke(request, pk):
    token = get_object_or_404(ApiToken.objects.for_user(request.user).select_related("user"), pk=pk)
    try:
        api_token_revoke(user=request.user, token=token)
    except ServiceError as exc:
        flash_error(request, exc)
    else:
        messages.success(request, f"Token {token.prefix}… revoked: calls signed with it are refused.")
    return redirect("endpoints:token-list")
