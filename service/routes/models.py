"""``/v1/models``: list, metadata, aliases, delete.

Every registry read and write runs in the thread pool; the writes then make the
request path's look-up forget what it knew (:class:`~..model_lookup.ModelLookup`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.concurrency import run_in_threadpool

from ..schemas import ErrorBody, ModelInfo
from ..state import StateDep
from ..stores import ALIAS_PATTERN, ID_LENGTH, ModelStore

router = APIRouter(prefix="/v1/models", tags=["models"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (404, 422)}
Alias = Annotated[
    str,
    Path(
        pattern=f"^{ALIAS_PATTERN.pattern}$",
        description="letters, digits, '.', '_', ':', '-'; not a model id",
        json_schema_extra={"not": {"pattern": f"^[0-9a-f]{{{ID_LENGTH}}}$"}},
        examples=["two-moons:latest"],
    ),
]


@router.get("", response_model=list[ModelInfo], summary="List models, oldest first")
async def list_models(state: StateDep) -> Any:
    return await run_in_threadpool(state.models.list)


@router.get("/{model_ref}", response_model=ModelInfo, responses=ERRORS)
async def get_model(model_ref: str, state: StateDep) -> Any:
    return await run_in_threadpool(_get, state.models, model_ref)


def _get(models: ModelStore, model_ref: str) -> dict[str, Any]:
    return models.get(models.resolve(model_ref))


def _set_alias(models: ModelStore, model_ref: str, alias: str) -> dict[str, Any]:
    model_id = models.resolve(model_ref)
    models.set_alias(alias, model_id)
    return models.get(model_id)


def _delete_alias(models: ModelStore, model_ref: str, alias: str) -> None:
    models.remove_alias(alias, models.resolve(model_ref))


def _delete(models: ModelStore, model_ref: str) -> None:
    models.delete(models.resolve(model_ref))


@router.put(
    "/{model_id}/aliases/{alias}",
    response_model=ModelInfo,
    responses=ERRORS,
    summary="Point an alias (e.g. two-moons:latest) at a model",
)
async def set_alias(model_id: str, alias: Alias, state: StateDep) -> Any:
    try:
        return await run_in_threadpool(_set_alias, state.models, model_id, alias)
    finally:
        state.model_lookup.forget()


@router.delete("/{model_id}/aliases/{alias}", status_code=204, responses=ERRORS)
async def delete_alias(model_id: str, alias: Alias, state: StateDep) -> Response:
    try:
        await run_in_threadpool(_delete_alias, state.models, model_id, alias)
    finally:
        state.model_lookup.forget()
    return Response(status_code=204)


@router.delete("/{model_ref}", status_code=204, responses=ERRORS, summary="Delete a model")
async def delete_model(model_ref: str, state: StateDep) -> Response:
    try:
        await run_in_threadpool(_delete, state.models, model_ref)
    finally:
        state.model_lookup.forget()
    return Response(status_code=204)
