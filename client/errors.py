"""Typed exceptions of the client: every server error body becomes one of these.

The server answers errors as ``{"error": {"code", "message", "field"}}`` with a 4xx/5xx
status; :func:`error_from_response` turns that into the matching subclass of
:class:`SbiserveError`, keeping the server's message, code and field so a caller can act
on them (``except InvalidInputError as e: print(e.field)``).
"""

from __future__ import annotations

import json
from typing import Any

import httpx


class SbiserveError(Exception):
    """Base class of every error the client raises.

    Attributes:
        message: What went wrong, as the server (or the client) worded it.
        code: The server's error code (``invalid_input``, ``not_found``, ...).
        field: The request field at fault (``x``, ``theta``, ``prior``...), if any.
        status: The HTTP status, or ``None`` for errors found before any request.
    """

    default_code = "error"

    def __init__(
        self,
        message: str,
        code: str | None = None,
        field: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.field = field
        self.status = status

    def __str__(self) -> str:
        where = f", field {self.field!r}" if self.field else ""
        http = f", HTTP {self.status}" if self.status is not None else ""
        return f"{self.message} [{self.code}{where}{http}]"


class InvalidInputError(SbiserveError, ValueError):
    """The request's content is wrong: a shape, a NaN, an unknown option (HTTP 400/422)."""

    default_code = "invalid_input"


class BadRequestError(InvalidInputError):
    """The request could not be parsed at all (HTTP 400: malformed JSON, not a .npy)."""

    default_code = "bad_request"


class NoDensityError(InvalidInputError):
    """``log_prob`` on a model whose family is a pure generator (e.g. ``energy_flow``)."""

    default_code = "no_density"


class UnauthorizedError(SbiserveError):
    """Missing or wrong API key (HTTP 401)."""

    default_code = "unauthorized"


class NotFoundError(SbiserveError, LookupError):
    """Unknown dataset, job, model or alias (HTTP 404)."""

    default_code = "not_found"


class ConflictError(SbiserveError):
    """The resource is in use, e.g. a dataset a running job trains on (HTTP 409)."""

    default_code = "conflict"


class PayloadTooLargeError(SbiserveError):
    """The request body is over the server's limit (HTTP 413)."""

    default_code = "payload_too_large"


class UnavailableError(SbiserveError):
    """The service cannot answer now (HTTP 503, or no connection) even after retries."""

    default_code = "unavailable"


class RequestTimeoutError(UnavailableError):
    """No answer in time: the client's timeout, or the server's own (HTTP 504)."""

    default_code = "timeout"


class ServerError(SbiserveError):
    """Any other server-side failure (HTTP 5xx)."""

    default_code = "internal_error"


class JobFailedError(SbiserveError):
    """A training job ended in ``failed``; ``job`` holds its final state."""

    default_code = "job_failed"

    def __init__(self, message: str, job: dict[str, Any]) -> None:
        super().__init__(message, field="job_id")
        self.job = job


class JobCancelledError(JobFailedError):
    """A training job ended in ``cancelled``."""

    default_code = "job_cancelled"


class WaitTimeoutError(SbiserveError, TimeoutError):
    """``wait`` gave up before the job ended (the job itself goes on)."""

    default_code = "wait_timeout"


_BY_STATUS: dict[int, type[SbiserveError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: UnauthorizedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: InvalidInputError,
    503: UnavailableError,
    504: RequestTimeoutError,
}


def error_from_response(response: httpx.Response) -> SbiserveError:
    """The typed exception for an error response (any body, JSON or not)."""
    status = response.status_code
    code, field, message = None, None, ""
    try:
        text = response.text.strip().replace("\n", " ")
    except httpx.StreamError:  # the body could not be read
        text = ""
    try:
        detail = json.loads(text).get("error")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, dict):
        code, field = detail.get("code"), detail.get("field")
        message = str(detail.get("message") or "")
    if not message:  # e.g. an HTML page from a proxy in front of the service
        message = f"{response.reason_phrase or 'error'}: {text[:200]}" if text else "no body"
    request = response.request
    message = f"{message} ({request.method} {request.url.path})"
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else SbiserveError)
    return kind(message, code=code, field=field, status=status)
