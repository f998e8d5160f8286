"""The thin Python client of sbiserve (httpx, numpy and tqdm; torch only when you use it).

- :class:`Client`: upload simulations, train, wait with a progress bar, sample, log_prob,
  manage datasets, jobs and models. numpy in and out; torch tensors when given tensors.
- :class:`RemotePosterior`: a served model behind sbi's posterior interface
  (``.sample((n,), x=x_o)``, ``.sample_batched``, ``.log_prob``, ``.set_default_x``).
- :func:`simulate_and_train`: sbi prior + simulator -> simulations -> trained
  :class:`RemotePosterior`, in one call.
- Typed errors: every server error is a subclass of :class:`SbiserveError` carrying the
  server's ``message``, ``code`` and ``field``.
"""

from .client import Client, box_prior
from .errors import (
    BadRequestError,
    ConflictError,
    InvalidInputError,
    JobCancelledError,
    JobFailedError,
    NoDensityError,
    NotFoundError,
    PayloadTooLargeError,
    RequestTimeoutError,
    SbiserveError,
    ServerError,
    UnauthorizedError,
    UnavailableError,
    WaitTimeoutError,
)
from .posterior import RemotePosterior
from .transport import RetryPolicy
from .workflow import prior_bounds, simulate_and_train

__all__ = [
    "BadRequestError",
    "Client",
    "ConflictError",
    "InvalidInputError",
    "JobCancelledError",
    "JobFailedError",
    "NoDensityError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RemotePosterior",
    "RequestTimeoutError",
    "RetryPolicy",
    "SbiserveError",
    "ServerError",
    "UnauthorizedError",
    "UnavailableError",
    "WaitTimeoutError",
    "box_prior",
    "prior_bounds",
    "simulate_and_train",
]
