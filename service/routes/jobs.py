"""``/v1/jobs``: start training (202), status, live progress (SSE), cancel."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Header, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from sbiserve.models import BoxPrior, ModelError

from .. import jobs
from ..errors import Conflict, InvalidInput, NotFound
from ..hyperparameters import normalize
from ..queue import TERMINAL, decode
from ..schemas import ErrorBody, JobAccepted, JobInfo, JobRequest
from ..state import StateDep

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (404, 422, 503)}
IDEMPOTENCY_TTL_S = 24 * 3600


def _check_prior(prior: BoxPrior, dataset: dict[str, Any]) -> None:
    """Refuses a prior that does not fit the dataset's dimension or its theta range."""
    if prior.dim != dataset["theta_dim"]:
        raise InvalidInput(
            f"prior has {prior.dim} dimension(s) but the dataset's theta has "
            f"{dataset['theta_dim']}",
            "prior",
        )
    lows, highs = dataset.get("theta_min"), dataset.get("theta_max")
    if lows is None or highs is None:
        return
    for i, (lo, hi, tmin, tmax) in enumerate(zip(prior.low, prior.high, lows, highs, strict=True)):
        # theta is stored as float32 (and the model compares in float32): a theta equal to
        # a bound such as 0.3 is float32(0.3), a little above the float64 0.3.
        if (lo is not None and tmin < np.float32(lo)) or (hi is not None and tmax > np.float32(hi)):
            raise InvalidInput(
                f"dataset theta[:, {i}] spans [{tmin}, {tmax}], outside the prior's "
                f"[{lo}, {hi}]: every simulated theta must lie inside the prior",
                "prior",
            )


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    responses={**ERRORS, **{code: {"model": ErrorBody} for code in (400, 409)}},
    summary="Start training",
    description="Queues a training job. An `Idempotency-Key` header makes retries safe: the "
    "same key returns the same job.",
)
async def create_job(
    body: JobRequest,
    response: Response,
    state: StateDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    dataset = await run_in_threadpool(state.datasets.get, body.dataset_id)
    # The only parse of the options; defaults for the dataset's size and parameters.
    options = normalize(
        body.family,
        body.hyperparameters,
        dataset.get("num_simulations"),
        dataset.get("theta_dim"),
    )
    prior = None
    if body.prior is not None:
        try:
            prior = BoxPrior.from_dict(body.prior.model_dump())
        except ModelError as e:
            raise InvalidInput(str(e), "prior") from None
        _check_prior(prior, dataset)
    job_id = uuid.uuid4().hex
    keys = state.keys
    if idempotency_key:
        digest = hashlib.sha256(body.model_dump_json().encode()).hexdigest()[:16]
        stored = await state.redis.set(
            keys.idempotency(idempotency_key), f"{job_id} {digest}", nx=True, ex=IDEMPOTENCY_TTL_S
        )
        if not stored:
            existing, _, first_digest = decode(
                await state.redis.get(keys.idempotency(idempotency_key)) or b""
            ).partition(" ")
            if first_digest and first_digest != digest:
                raise Conflict(
                    "this Idempotency-Key was already used for a different request; "
                    "use a new key for a new job",
                    "Idempotency-Key",
                )
            job = jobs.Job.from_hash(await jobs.read(state.redis, keys, existing))
            response.headers["Location"] = f"/v1/jobs/{existing}"
            return {"job_id": existing, "status": job.status if job else "queued"}
    pipe = state.redis.pipeline()
    jobs.create(
        pipe,
        keys,
        job_id,
        dataset_id=body.dataset_id,
        options=options,
        prior=prior.to_dict() if prior else None,
        name=body.name,
    )
    try:
        await pipe.execute()
    except Exception:
        if idempotency_key:  # free the key, or every retry would name a job never made
            await state.redis.delete(keys.idempotency(idempotency_key))
        raise
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return {"job_id": job_id, "status": "queued"}


async def _job(state: Any, job_id: str) -> dict[str, Any]:
    job = jobs.Job.from_hash(await jobs.read(state.redis, state.keys, job_id))
    if job is None:
        raise NotFound(f"unknown job {job_id!r}", "job_id")
    return job.view()


@router.get("", response_model=list[JobInfo], responses=ERRORS, summary="Recent jobs, newest first")
async def list_jobs(state: StateDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Any:
    ids = decode(await jobs.recent(state.redis, state.keys, limit))
    out = []
    for job_id in ids:
        job = jobs.Job.from_hash(await jobs.read(state.redis, state.keys, job_id))
        if job is not None:
            out.append(job.view())
    return out


@router.get("/{job_id}", response_model=JobInfo, responses=ERRORS)
async def get_job(job_id: str, state: StateDep) -> Any:
    return await _job(state, job_id)


@router.get(
    "/{job_id}/events",
    summary="Live progress as server-sent events",
    description="`event: progress` with `{epoch, max_epochs, train_loss, val_loss}` after "
    "each epoch, then one `event: status` with `{status, model_id | error}`; the stream "
    "then ends. Past events are replayed first.",
    responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}},
)
async def job_events(job_id: str, state: StateDep) -> StreamingResponse:
    await _job(state, job_id)

    async def stream() -> AsyncIterator[bytes]:
        last = "0-0"
        idle_since = time.monotonic()
        while True:
            response = await jobs.read_events(
                state.redis_blocking, state.keys, job_id, last, block_ms=1000
            )
            for _, messages in response or []:
                for message_id, fields in messages:
                    last = decode(message_id)
                    kind, event = jobs.event(fields)
                    yield f"event: {kind}\ndata: {json.dumps(event)}\n\n".encode()
                    if kind == "status":
                        return
                    idle_since = time.monotonic()
            if not response:
                job = await _job(state, job_id)
                if job["status"] in TERMINAL:  # e.g. cancelled before it started
                    final = {"status": job["status"], "model_id": job["model_id"]}
                    if job["error"]:
                        final["error"] = job["error"]
                    yield f"event: status\ndata: {json.dumps(final)}\n\n".encode()
                    return
                if time.monotonic() - idle_since > 15:
                    idle_since = time.monotonic()
                    yield b": keep-alive\n\n"
            await asyncio.sleep(0)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@router.delete(
    "/{job_id}",
    status_code=202,
    response_model=JobInfo,
    responses=ERRORS,
    summary="Cancel a job (a running one stops at its next step)",
)
async def cancel_job(job_id: str, state: StateDep) -> Any:
    job = await _job(state, job_id)
    if job["status"] in TERMINAL:
        return job
    pipe = state.redis.pipeline()
    jobs.cancel(pipe, state.keys, job_id, job["dataset_id"], IDEMPOTENCY_TTL_S)
    await pipe.execute()
    return await _job(state, job_id)
