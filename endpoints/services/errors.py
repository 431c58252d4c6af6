"""The one error type services raise, and its permission flavour."""


class ServiceError(Exception):
    """A request the service refuses, with a message for people and the field at fault."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid", extra=None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code
        self.extra: dict = extra or {}  # machine-readable details a client can act on
        # Other refusals of the same request, for a form that shows every error at once.
        self.also: list[ServiceError] = []

    def as_dict(self) -> dict:
        body = {"detail": self.message, "field": self.field, "code": self.code, **self.extra}
        if self.also:  # every problem of the request, by field ("non_field_errors" for the whole)
            errors: dict[str, list[str]] = {}
            for each in (self, *self.also):
                errors.setdefault(each.field or "non_field_errors", []).append(each.message)
            body["errors"] = errors
        return body


class Unprocessable(ServiceError):
    """Each value has the form asked for, but the service cannot take them: they do not go together
    (a memory size for that CPU), they name what is not there, or their content cannot be used (a
    file that does not load). The API answers 422; a value of the wrong form answers 400."""


class NotAllowed(ServiceError):
    """The user may not do this."""

    def __init__(self, message: str = "You do not have permission to do this."):
        super().__init__(message, code="permission_denied")


def refuse_all(problems: list[ServiceError]) -> None:
    """Raise the first problem carrying the others (`ServiceError.also`), if there is any."""
    if problems:
        first, *others = problems
        first.also = others
        raise first


def require_admin(user) -> None:
    if not (user and user.is_authenticated and user.is_staff):
        raise NotAllowed("Only an admin can do this.")
