"""HTTP with retries: transient failures are retried with exponential backoff.

Transient means the service is briefly unable to answer: a 502/503/504 status, a refused
or reset connection, a timeout. Every route the client calls is safe to repeat (uploads
are content-addressed, training carries an ``Idempotency-Key``, the rest read or delete),
so each request is retried the same way. Any other error status raises at once as a
typed :class:`~sbiserve.client.errors.SbiserveError`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import RequestTimeoutError, SbiserveError, UnavailableError, error_from_response


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried.

    Attributes:
        attempts: Tries per request in all (1 means no retry).
        backoff_s: Wait before the second try, in seconds; doubled after each try.
        max_backoff_s: Longest single wait, in seconds.
        statuses: HTTP statuses that count as transient.
        jitter: Fraction of each wait that is randomized, so clients do not retry in step.
    """

    attempts: int = 5
    backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    statuses: tuple[int, ...] = (502, 503, 504)
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("backoff_s and max_backoff_s must be non-negative")

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based).

        A server's ``Retry-After`` is honoured up to ``max_backoff_s``.
        """
        base = min(self.max_backoff_s, self.backoff_s * 2**retry)
        if retry_after is not None:
            base = min(self.max_backoff_s, max(base, retry_after))
        return base * (1 - self.jitter * random.random())


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return float(value)
    except ValueError:  # absent, or an HTTP date (rare; the backoff applies)
        return None


def _transport_error(error: httpx.TransportError, request: httpx.Request) -> SbiserveError:
    where = f"{request.method} {request.url}"
    if isinstance(error, httpx.TimeoutException):
        return RequestTimeoutError(
            f"no answer from {where} in time ({type(error).__name__}); raise the client's "
            "timeout for large requests"
        )
    return UnavailableError(f"cannot reach {where}: {error or type(error).__name__}")


class Transport:
    """An :class:`httpx.Client` plus retries and error translation.

    Arguments:
        http: The HTTP client (base URL, headers and timeouts already set).
        retry: The retry policy.
    """

    def __init__(self, http: httpx.Client, retry: RetryPolicy) -> None:
        self.http = http
        self.retry = retry

    def request(
        self,
        method: str,
        path: str,
        make_body: Callable[[], dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Sends a request, retrying transient failures; raises typed errors.

        Arguments:
            method: HTTP method.
            path: Path under the base URL.
            make_body: Builds fresh body arguments (``content``, ``files``...) for each try,
                so a streamed upload restarts from its beginning.
            kwargs: Passed to :meth:`httpx.Client.build_request` (``json``, ``headers``...).
        """
        return self._send(method, path, make_body, False, kwargs)

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """Like :meth:`request`, but the successful response's body is left to be streamed."""
        response = self._send(method, path, None, True, kwargs)
        try:
            yield response
        finally:
            response.close()

    def _send(
        self,
        method: str,
        path: str,
        make_body: Callable[[], dict[str, Any]] | None,
        stream: bool,
        kwargs: dict[str, Any],
    ) -> httpx.Response:
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            body = make_body() if make_body else {}
            request = self.http.build_request(method, path, **kwargs, **body)
            try:
                response = self.http.send(request, stream=stream)
            except httpx.TransportError as e:
                if last:
                    raise _transport_error(e, request) from e
                time.sleep(self.retry.delay(attempt))
                continue
            if response.status_code < 400:
                return response
            try:
                response.read()
            except httpx.TransportError:
                pass  # the status alone decides below
            finally:
                response.close()
            if response.status_code in self.retry.statuses and not last:
                time.sleep(self.retry.delay(attempt, _retry_after(response)))
                continue
            raise error_from_response(response)
        raise AssertionError("unreachable: the last attempt returns or raises")
