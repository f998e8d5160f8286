"""``/v1/posterior/sample`` and ``/v1/posterior/log_prob``: answered by the workers.

The API checks the request against the model's metadata (dimensions, caps), puts it on
the sample lane, and waits for the worker's answer on a reply list. Waiting requests of
the same model are drawn in one forward pass by the worker.
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from ..arrays import NPY_MEDIA_TYPE, as_matrix, from_json, json_bytes, npy_header, to_npy_bytes
from ..errors import InvalidInput, NoDensity, ServiceError, Unavailable
from ..queue import SAMPLE_LANE_MAXLEN
from ..sample_lane import decode_array, encode_request, unpack_reply
from ..schemas import ErrorBody, LogProbRequest, LogProbResponse, SampleRequest, SampleResponse
from ..state import AppState, StateDep

router = APIRouter(prefix="/v1/posterior", tags=["posterior"])
# The unversioned path of the original design, answered by the same handler.
alias_router = APIRouter(tags=["posterior"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 404, 413, 422, 503, 504)
}


class WorkerTimeout(ServiceError):
    status = 504
    code = "timeout"


def _observations(value: Any, x_dim: int) -> tuple[np.ndarray, bool]:
    """``x`` as ``(B, x_dim)`` float32 and whether a single observation was sent."""
    array = from_json(value, "x")
    single = array.ndim == 1
    if single:
        if array.shape[0] != x_dim:
            raise InvalidInput(
                f"x has {array.shape[0]} value(s) but the model expects x_dim={x_dim} "
                "(send a batch as a list of lists)",
                "x",
            )
        array = array[None]
    return as_matrix(array, "x", columns=x_dim), single


async def _draw(
    state: AppState, model_id: str, x: np.ndarray, num_samples: int, seed: int
) -> tuple[dict[str, Any], np.ndarray]:
    """Asks the worker for ``num_samples`` draws per row of ``x``: the reply and the
    draws ``(num_samples, rows, theta_dim)``."""
    fields = {
        "op": "sample",
        "model_id": model_id,
        "x": to_npy_bytes(x),
        "num_samples": num_samples,
        "seed": seed,
    }
    reply, payload = await _ask_worker(state, fields)
    return reply, decode_array(reply, payload)


async def _ask_worker(state: AppState, fields: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """Puts a request on the sample lane and waits for its reply."""
    request_id = uuid.uuid4().hex
    timeout = state.settings.sample_timeout_s
    entry = encode_request(request_id, timeout, fields)
    await state.redis.xadd(state.keys.sample, entry, maxlen=SAMPLE_LANE_MAXLEN, approximate=True)
    reply = await state.redis_blocking.blpop([state.keys.reply(request_id)], timeout=timeout)
    if reply is None:
        live = await state.redis.zcount(
            state.keys.workers, time.time() - state.settings.worker_ttl_s, "+inf"
        )
        if not live:
            raise Unavailable("no live worker to answer: start one with `sbiserve worker`")
        raise WorkerTimeout(f"no worker answered within {timeout:.0f} s; retry later")
    meta, payload = unpack_reply(reply[1])
    if "error" in meta:
        raise WorkerError(meta)
    return meta, payload


class WorkerError(ServiceError):
    """An error the worker replied with, keeping its status, code and field."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(str(reply["error"]), reply.get("field"))
        self.status = int(reply.get("status", 500))
        fallback = "invalid_input" if self.status == 422 else "internal_error"
        self.code = str(reply.get("code") or fallback)


def _wants_npy(request: Request) -> bool:
    return NPY_MEDIA_TYPE in request.headers.get("accept", "")


SAMPLE_DESCRIPTION = (
    "Reproducible: the same `seed` gives the same draws. With `Accept: application/x-npy` "
    "the answer is the array as .npy bytes (headers carry model id and seed)."
)


@alias_router.post(
    "/posterior/sample",
    response_model=SampleResponse,
    responses={**ERRORS, 200: {"content": {NPY_MEDIA_TYPE: {}}}},
    summary="Alias of POST /v1/posterior/sample",
    description="The same endpoint without the version prefix; answers exactly like "
    "`POST /v1/posterior/sample`. " + SAMPLE_DESCRIPTION,
    operation_id="sample_posterior_alias",
)
@router.post(
    "/sample",
    response_model=SampleResponse,
    responses={**ERRORS, 200: {"content": {NPY_MEDIA_TYPE: {}}}},
    summary="Posterior draws for one observation or a batch",
    description=SAMPLE_DESCRIPTION,
)
async def sample(body: SampleRequest, request: Request, state: StateDep) -> Any:
    settings = state.settings
    meta = await state.model_lookup.meta(body.model)
    x, single = _observations(body.x, meta["x_dim"])
    if body.num_samples > settings.max_num_samples:
        raise InvalidInput(
            f"num_samples={body.num_samples} is over the limit of {settings.max_num_samples}",
            "num_samples",
        )
    if x.shape[0] > settings.max_observations:
        raise InvalidInput(
            f"{x.shape[0]} observations in one request is over the limit of "
            f"{settings.max_observations}",
            "x",
        )
    if body.num_samples * x.shape[0] > settings.max_total_draws:
        raise InvalidInput(
            f"num_samples x observations = {body.num_samples * x.shape[0]} is over the limit "
            f"of {settings.max_total_draws} draws per request",
            "num_samples",
        )
    seed = body.seed if body.seed is not None else secrets.randbelow(2**63)
    reply, draws = await _draw(state, meta["model_id"], x, body.num_samples, seed)
    if single:
        draws = draws[:, 0]
    headers = {
        "X-Sbiserve-Model-Id": meta["model_id"],
        "X-Sbiserve-Seed": str(seed),
        "X-Sbiserve-Batch-Requests": str(reply["batch_requests"]),
    }
    if _wants_npy(request):
        npy = npy_header(draws.shape, draws.dtype.str) + draws.tobytes()
        return Response(npy, media_type=NPY_MEDIA_TYPE, headers=headers)
    content = {
        "model_id": meta["model_id"],
        "samples": draws.astype(np.float64),  # written by orjson, same digits as tolist()
        "seed": seed,
        "batch_requests": reply["batch_requests"],
    }
    return Response(json_bytes(content), media_type="application/json", headers=headers)


@router.post(
    "/log_prob",
    response_model=LogProbResponse,
    responses=ERRORS,
    summary="log q(theta | x), for families with a density",
    description="`theta` (N, theta_dim) with one `x` (x_dim), or with a batch of N `x`. "
    "422 for families without a density (energy flows are pure generators).",
)
async def log_prob(body: LogProbRequest, state: StateDep) -> Any:
    meta = await state.model_lookup.meta(body.model)
    if meta["log_prob_kind"] == "none":
        raise NoDensity(
            f"model {meta['model_id']} (family {meta['family']}) is a generator without a density: "
            "log_prob is not available; draw samples instead",
            "model",
        )
    x, single = _observations(body.x, meta["x_dim"])
    theta_array = from_json(body.theta, "theta")
    if theta_array.ndim == 1 and meta["theta_dim"] > 1:
        theta_array = theta_array[None]  # one parameter vector, as for x
    theta = as_matrix(theta_array, "theta", columns=meta["theta_dim"])
    if not single and x.shape[0] != theta.shape[0]:
        raise InvalidInput(
            f"theta has {theta.shape[0]} rows but x has {x.shape[0]}; send one x or one per "
            "theta row",
            "x",
        )
    if theta.shape[0] > state.settings.max_total_draws:
        raise InvalidInput("too many theta rows in one request", "theta")
    reply, payload = await _ask_worker(
        state,
        {
            "op": "log_prob",
            "model_id": meta["model_id"],
            "x": to_npy_bytes(x[0] if single else x),
            "theta": to_npy_bytes(theta),
        },
    )
    values = decode_array(reply, payload)
    return {"model_id": meta["model_id"], "log_prob": values.tolist(), "kind": reply["kind"]}
