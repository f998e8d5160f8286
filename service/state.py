"""What every route needs (:class:`AppState`) and the dependency that hands it over.

Routes import from here, not from :mod:`sbiserve.service.app`, which imports the routes:
no import loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from .metrics import Metrics
from .model_lookup import ModelLookup
from .queue import Keys
from .settings import Settings
from .stores import DatasetStore, ModelStore


@dataclass
class AppState:
    """The API's settings, Redis clients, stores and metrics, built once at startup."""

    settings: Settings
    # aioredis.Redis clients returning bytes (their response unions defeat mypy): ``redis``
    # gives up after ``redis_timeout_s``; ``redis_blocking`` only serves blocking reads
    # (the wait for a sampling reply, live job events), which may take longer.
    redis: Any
    redis_blocking: Any
    keys: Keys
    datasets: DatasetStore
    models: ModelStore
    metrics: Metrics
    model_lookup: ModelLookup  # model references on the request path (off the event loop)


async def get_state(request: Request) -> AppState:
    """The app's state; ``async`` so FastAPI calls it on the event loop (a plain ``def``
    dependency costs a hop to the thread pool on every request)."""
    state: AppState = request.app.state.sbiserve
    return state


StateDep = Annotated[AppState, Depends(get_state)]
