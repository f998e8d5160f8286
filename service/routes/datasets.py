"""``/v1/datasets``: upload (multipart .npy/.npz or JSON), list, describe, delete."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from .. import jobs
from ..arrays import DecodeLimits, as_matrix, from_json, load_npy, load_npz
from ..errors import BadRequest, Conflict, InvalidInput, error_field
from ..queue import ACTIVE, decode
from ..schemas import DatasetInfo, DatasetJSON, ErrorBody
from ..state import StateDep

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 404, 409, 413, 422, 503)
}
BINARY = {"type": "string", "format": "binary"}
UPLOAD_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": DatasetJSON.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "theta": {**BINARY, "description": "(N, theta_dim) .npy"},
                    "x": {**BINARY, "description": "(N, x_dim) .npy"},
                    "file": {**BINARY, "description": ".npz holding arrays theta and x"},
                    "name": {"type": "string"},
                    "theta_names": {"type": "string", "description": "JSON list or a,b,c"},
                    "x_names": {"type": "string", "description": "JSON list or a,b,c"},
                },
            }
        },
    },
}


def _names(value: Any, count: int, field: str) -> list[str] | None:
    """Checked labels: ``count`` distinct non-empty strings of at most 64 characters.

    A multipart form sends them as a JSON list or as comma-separated text.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else text.split(",")
        except ValueError:
            raise InvalidInput(f"{field} is not a JSON list: {text[:80]!r}", field) from None
        if isinstance(value, list):
            value = [v.strip() if isinstance(v, str) else v for v in value]
    if not isinstance(value, list) or not all(
        isinstance(v, str) and 0 < len(v) <= 64 for v in value
    ):
        raise InvalidInput(f"{field} must be a list of names of 1-64 characters", field)
    if len(value) != count:
        raise InvalidInput(f"{field} has {len(value)} name(s) but there are {count} columns", field)
    if len(set(value)) != len(value):
        raise InvalidInput(f"{field} repeats a name: {value}", field)
    return list(value)


def _store(
    state: Any,
    theta: np.ndarray,
    x: np.ndarray,
    name: str | None,
    theta_names: Any = None,
    x_names: Any = None,
) -> dict[str, Any]:
    theta = as_matrix(theta, "theta")
    x = as_matrix(x, "x")
    names = {
        "theta_names": _names(theta_names, theta.shape[1], "theta_names"),
        "x_names": _names(x_names, x.shape[1], "x_names"),
    }
    if theta.shape[0] != x.shape[0]:
        raise InvalidInput(
            f"theta has {theta.shape[0]} rows but x has {x.shape[0]}; each row of theta must "
            "pair with one row of x",
            "x",
        )
    if theta.shape[0] < 2:
        raise InvalidInput("a dataset needs at least 2 simulations", "theta")
    meta, created = state.datasets.put(theta, x, name=name, names=names)
    return {**meta, "created": created}


@router.post(
    "",
    status_code=201,
    response_model=DatasetInfo,
    responses={**ERRORS, 200: {"model": DatasetInfo, "description": "already stored"}},
    openapi_extra={"requestBody": UPLOAD_BODY},
    summary="Upload simulations",
    description="multipart/form-data with files `theta` and `x` (.npy), or one file `file` "
    "(.npz holding `theta` and `x`), optional fields `name`, `theta_names` and `x_names` "
    '(JSON lists or comma-separated); or a JSON body `{"theta": [[...]], "x": [[...]]}` '
    "(with the same optional fields) for small sets. Uploads stream to disk.",
)
async def upload(request: Request, response: Response, state: StateDep) -> Any:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=3, max_fields=5)
        name = form.get("name")
        labels = [form.get(k) for k in ("theta_names", "x_names")]
        labels = [v if isinstance(v, str) else None for v in labels]
        files = {k: v for k, v in form.items() if isinstance(v, UploadFile)}
        limits = DecodeLimits(state.settings.max_dataset_bytes, state.settings.max_dataset_rows)
        if "file" in files:
            arrays = await run_in_threadpool(load_npz, files["file"].file, "file", limits)
            theta, x = arrays["theta"], arrays["x"]
        elif "theta" in files and "x" in files:
            theta = await run_in_threadpool(load_npy, files["theta"].file, "theta", limits)
            x = await run_in_threadpool(load_npy, files["x"].file, "x", limits)
        else:
            raise BadRequest(
                "multipart upload needs files `theta` and `x` (.npy) or `file` (.npz); got "
                f"{sorted(form.keys())}",
                "file",
            )
        meta = await run_in_threadpool(
            _store, state, theta, x, name if isinstance(name, str) else None, *labels
        )
        await form.close()
    elif content_type.startswith("application/json") or not content_type:
        try:
            body = DatasetJSON.model_validate_json(await request.body())
        except ValueError as e:
            raise _json_error(e) from None
        meta = await run_in_threadpool(
            _store,
            state,
            from_json(body.theta, "theta"),
            from_json(body.x, "x"),
            body.name,
            body.theta_names,
            body.x_names,
        )
    else:
        raise BadRequest(
            f"unsupported content type {content_type!r}: use multipart/form-data or JSON",
            "content-type",
        )
    response.headers["Location"] = f"/v1/datasets/{meta['dataset_id']}"
    if not meta["created"]:
        response.status_code = 200
    return meta


def _json_error(error: ValueError) -> Exception:
    errors: list[Any] = getattr(error, "errors", lambda: [])()
    if errors and errors[0].get("type") == "json_invalid":
        return BadRequest(f"malformed JSON body: {errors[0].get('msg')}", "body")
    if errors:
        field = error_field(errors[0].get("loc", ()))
        return InvalidInput(f"{field or 'body'}: {errors[0].get('msg')}", field)
    return BadRequest(str(error), "body")


@router.get("", response_model=list[DatasetInfo], summary="List datasets")
async def list_datasets(state: StateDep) -> Any:
    return await run_in_threadpool(state.datasets.list)


@router.get("/{dataset_id}", response_model=DatasetInfo, responses=ERRORS)
async def get_dataset(dataset_id: str, state: StateDep) -> Any:
    return await run_in_threadpool(state.datasets.get, dataset_id)


@router.delete("/{dataset_id}", status_code=204, responses=ERRORS, summary="Delete a dataset")
async def delete_dataset(dataset_id: str, state: StateDep) -> Response:
    await run_in_threadpool(state.datasets.path, dataset_id)  # NotFound for an unknown id
    for job_id in decode(await jobs.of_dataset(state.redis, state.keys, dataset_id)):
        job = jobs.Job.from_hash(await jobs.read(state.redis, state.keys, job_id))
        if job is not None and job.status in ACTIVE:
            raise Conflict(
                f"dataset {dataset_id} is used by {job.status} job {job_id}; cancel it or wait",
                "dataset_id",
            )
    await run_in_threadpool(state.datasets.remove, dataset_id)
    return Response(status_code=204)
