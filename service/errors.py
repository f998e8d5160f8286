"""Errors the API returns, each with an HTTP status, a code, a message and a field.

The body is always ``{"error": {"code": ..., "message": ..., "field": ...}}``.
"""

from __future__ import annotations


class ServiceError(Exception):
    """An error with an HTTP status; the message is shown to the user as is."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict[str, dict[str, str | None]]:
        """The JSON error body."""
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class InvalidInput(ServiceError):
    """The request is well formed but its content is wrong (shape, NaN, range)."""

    status = 422
    code = "invalid_input"


class NoDensity(InvalidInput):
    """``log_prob`` was asked of a family that is a generator without a density."""

    code = "no_density"


class BadRequest(ServiceError):
    """The request cannot be parsed (malformed JSON, wrong file format)."""

    status = 400
    code = "bad_request"


class NotFound(ServiceError):
    """An unknown dataset, job, model or alias."""

    status = 404
    code = "not_found"


class Conflict(ServiceError):
    """The resource is in use or in a state that forbids the operation."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ServiceError):
    """The body is larger than the configured limit."""

    status = 413
    code = "payload_too_large"


class Unauthorized(ServiceError):
    """Missing or wrong API key."""

    status = 401
    code = "unauthorized"


class Unavailable(ServiceError):
    """Redis or the workers cannot be reached right now; retry later."""

    status = 503
    code = "unavailable"
