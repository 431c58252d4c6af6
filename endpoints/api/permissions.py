"""Who may call which API action, checked before any input is read.

The services still decide (they raise `NotAllowed`); these checks only answer a member's write
with the same 403 the service would give, before their input is validated, so a member never
learns more from a 400 than from a 403.
"""

from rest_framework.permissions import SAFE_METHODS, BasePermission

ADMIN_ONLY = "Only an admin can do this."


class IsAdmin(BasePermission):
    """Admins (staff users) only, for reads and writes alike (the audit log)."""

    message = ADMIN_ONLY

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class IsAdminOrReadOnly(BasePermission):
    """Everyone signed in reads; only admins write."""

    message = ADMIN_ONLY

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or request.user.is_staff
