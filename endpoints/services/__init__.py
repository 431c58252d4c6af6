"""The service layer: every write the dashboard, the API, the tasks and commands make.

Each function is `<noun>_<verb>` with keyword-only arguments and raises `ServiceError` with a
message meant for people; each interface translates that once.
"""

from endpoints.services.errors import NotAllowed, ServiceError

__all__ = ["NotAllowed", "ServiceError"]
