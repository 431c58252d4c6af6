"""The IAM permissions the caller holds in a fake, as testIamPermissions reports them.

Google's testIamPermissions answers the subset of the asked permissions the caller holds. By
default the caller holds every permission (an owner); `revoke_all` makes a fresh principal that
holds none, and `grant` gives some back.
"""

from __future__ import annotations

from collections.abc import Iterable


class Permissions:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.everything = True
        self.granted: set[str] = set()

    def revoke_all(self) -> None:
        self.everything = False
        self.granted = set()

    def grant(self, *permissions: str) -> None:
        self.granted.update(permissions)

    def held(self, asked: Iterable[str]) -> list[str]:
        """The asked permissions the caller holds, in the order asked."""
        return [permission for permission in asked if self.everything or permission in self.granted]
