"""``/v1/models``: list, metadata, aliases, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.concurrency import run_in_threadpool

from ..schemas import ErrorBody, ModelInfo
from ..state import StateDep
from ..stores import ALIAS_PATTERN, ID_LENGTH

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
    return state.models.get(state.models.resolve(model_ref))


@router.put(
    "/{model_id}/aliases/{alias}",
    response_model=ModelInfo,
    responses=ERRORS,
    summary="Point an alias (e.g. two-moons:latest) at a model",
)
async def set_alias(model_id: str, alias: Alias, state: StateDep) -> Any:
    model_id = state.models.resolve(model_id)
    state.models.set_alias(alias, model_id)
    return state.models.get(model_id)


@router.delete("/{model_id}/aliases/{alias}", status_code=204, responses=ERRORS)
async def delete_alias(model_id: str, alias: Alias, state: StateDep) -> Response:
    model_id = state.models.resolve(model_id)
    state.models.remove_alias(alias, model_id)
    return Response(status_code=204)


@router.delete("/{model_ref}", status_code=204, responses=ERRORS, summary="Delete a model")
async def delete_model(model_ref: str, state: StateDep) -> Response:
    model_id = state.models.resolve(model_ref)
    await run_in_threadpool(state.models.delete, model_id)
    state.model_meta.pop(model_id, None)
    return Response(status_code=204)
