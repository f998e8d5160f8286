"""Errors the API returns, each with an HTTP status, a code, a message and a field.

The body is always ``{"error": {"code": ..., "message": ..., "field": ...}}``. Messages
never carry credentials (:func:`redact`), and an unexpected error's details stay in the
server's log (the body gives a reference to find them).
"""

from __future__ import annotations

import re
from typing import Any

# The user-info part of a URL (``redis://user:password@host``) up to its last ``@``.
_CREDENTIALS = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s]*@")


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``.

    Example:
        >>> redact("Redis at redis://:hunter2@127.0.0.1:6379/0 is unreachable")
        'Redis at redis://***@127.0.0.1:6379/0 is unreachable'
    """
    return _CREDENTIALS.sub(r"\1***@", text)


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


FIELD_NAME = re.compile(r"[A-Za-z_][\w-]*")


def error_field(loc: Any) -> str | None:
    """The field a validation error's location names: ``theta.3.1``, not ``body.theta...``.

    Where the body, query or path starts and which member of a union (``list[float]``)
    was tried are left out.
    """
    parts = [
        str(p)
        for p in loc
        if p not in ("body", "query", "path", "header")
        and (isinstance(p, int) or FIELD_NAME.fullmatch(str(p)))
    ]
    return ".".join(parts) or None
