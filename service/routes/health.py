"""``/livez``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from ..errors import redact
from ..state import StateDep

router = APIRouter(tags=["health"])


@router.get("/livez", summary="The process is alive")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Redis reachable and at least one live worker",
    responses={503: {"description": "not ready, with the reason"}},
)
async def readyz(state: StateDep) -> Any:
    try:
        await state.redis.ping()
        now = time.time()
        live = await state.redis.zcount(
            state.keys.workers, now - state.settings.worker_ttl_s, "+inf"
        )
    except (RedisError, OSError) as e:
        return JSONResponse(
            {
                "error": {
                    "code": "unavailable",
                    "message": redact(
                        f"Redis at {state.settings.redis_url} is unreachable: "
                        f"{str(e) or type(e).__name__}"
                    ),
                    "field": None,
                }
            },
            status_code=503,
        )
    if live == 0:
        message = "no live worker: start one with `sbiserve worker` (same REDIS_URL)"
        return JSONResponse(
            {"error": {"code": "unavailable", "message": message, "field": None}},
            status_code=503,
        )
    return {"status": "ready", "workers": live}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    try:
        await state.metrics.redis_snapshot.refresh(
            state.redis, state.keys, state.settings.worker_ttl_s
        )
    except (RedisError, OSError):
        state.metrics.redis_snapshot.data = {}  # serve the API's own figures only
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
