"""``GET /v1/limits``: the caps this server enforces, so clients need no copy of them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..schemas import Limits
from ..state import StateDep

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/limits", response_model=Limits, summary="The server's per-request caps")
async def limits(state: StateDep) -> Any:
    settings = state.settings
    return {name: getattr(settings, name) for name in Limits.model_fields}
