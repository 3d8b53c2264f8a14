"""One error hierarchy for the whole service; HTTP mapping lives in ``authz.api.errors``.

Every error carries a stable machine ``code``, a public ``description`` safe to show to a
client, and the HTTP ``status`` it maps to. The cause of an unexpected error is only logged.
"""

from __future__ import annotations

from typing import Any


class AuthzError(Exception):
    """Base class: a failure with a public description."""

    code = "server_error"
    description = "Internal error."
    status = 500

    def __init__(self, description: str | None = None, **extra: Any) -> None:
        if description is not None:
            self.description = description
        self.extra: dict[str, Any] = extra
        super().__init__(self.description)


class ConfigError(AuthzError):
    """A missing or invalid setting; raised at start-up, before anything is served."""

    code = "invalid_config"
    description = "Invalid configuration."


class InvalidInput(AuthzError):
    code, description, status = "invalid_request", "The request is invalid.", 400


class Unauthorized(AuthzError):
    code, description, status = "unauthorized", "Authentication required.", 401


class PermissionDenied(AuthzError):
    code, description, status = "forbidden", "Not allowed.", 403


class NotFound(AuthzError):
    code, description, status = "not_found", "Not found.", 404


class Conflict(AuthzError):
    code, description, status = "conflict", "The request conflicts with the stored state.", 409


class RateLimited(AuthzError):
    code, description, status = "rate_limited", "Too many requests.", 429


class Unavailable(AuthzError):
    code, description, status = "unavailable", "Temporarily unavailable.", 503
