"""Pictures over HTTP: ``GET /v1/models/{ref}/plots/{name}.png``, ``POST /v1/posterior/plot``.

Model plots are drawn from the model's stored metadata (training curve, diagnostics);
the pair plot asks a worker for draws like ``/v1/posterior/sample`` does. Rendering runs
in the thread pool. A model never changes, so its plots may be cached by the browser.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from .. import plots
from ..errors import InvalidInput, NotFound
from ..schemas import ErrorBody, PosteriorPlotRequest
from ..state import StateDep
from .posterior import _draw, _observations

router = APIRouter(tags=["plots"])
PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "a PNG image"}
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (404, 422, 503, 504)
}
Pixels = Query(ge=100, le=4000, description="image size in pixels")


def _names(meta: dict[str, Any]) -> list[str]:
    return meta.get("theta_names") or [f"theta_{i + 1}" for i in range(meta["theta_dim"])]


def _render_model_plot(meta: dict[str, Any], name: str, width: int, height: int) -> bytes:
    title = f"{meta.get('name') or meta['model_id']} ({meta['family']})"
    if name == "training":
        return plots.training_png(meta["training"], title, width, height)
    diagnostics = meta.get("diagnostics")
    if not diagnostics or "rank_counts" not in diagnostics:
        why = (diagnostics or {}).get("error") or "the worker ran with diagnostics_pairs=0"
        raise NotFound(
            f"model {meta['model_id']} has no diagnostics to plot ({why}); "
            "only its training plot is available",
            "name",
        )
    render = plots.sbc_png if name == "sbc" else plots.coverage_png
    return render(diagnostics, _names(meta), width, height)


@router.get(
    "/v1/models/{model_ref}/plots/{filename}",
    response_class=Response,
    responses={**PNG, **ERRORS},
    summary="A picture of a model: training.png, sbc.png or coverage.png",
    description="`training`: loss per epoch; `sbc`: rank histograms per parameter; "
    "`coverage`: TARP expected coverage and interval coverage per parameter.",
)
async def model_plot(
    model_ref: str,
    filename: str,
    state: StateDep,
    width: Annotated[int, Pixels] = 800,
    height: Annotated[int, Pixels] = 500,
) -> Response:
    name, dot, extension = filename.rpartition(".")
    if not dot or extension != "png" or name not in plots.MODEL_PLOTS:
        raise NotFound(
            f"unknown plot {filename!r}: one of "
            + ", ".join(f"{n}.png" for n in plots.MODEL_PLOTS),
            "name",
        )
    meta = await state.model_lookup.meta(model_ref)
    png = await run_in_threadpool(_render_model_plot, meta, name, width, height)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.post(
    "/v1/posterior/plot",
    response_class=Response,
    responses={**PNG, **ERRORS},
    summary="A posterior pair plot for one observation",
    description="Draws `num_samples` from the model for `x` and returns a pair plot: "
    "marginals on the diagonal, pairwise densities below it, parameter names from the "
    "upload. `theta` (optional) marks a parameter vector, e.g. the true one.",
)
async def posterior_plot(body: PosteriorPlotRequest, state: StateDep) -> Response:
    meta = await state.model_lookup.meta(body.model)
    x, single = _observations(body.x, meta["x_dim"])
    if not single:
        raise InvalidInput("a pair plot is for one observation: send x as [x_dim] values", "x")
    if body.num_samples > state.settings.max_num_samples:
        raise InvalidInput(
            f"num_samples={body.num_samples} is over the limit of {state.settings.max_num_samples}",
            "num_samples",
        )
    if body.theta is not None and len(body.theta) != meta["theta_dim"]:
        raise InvalidInput(
            f"theta has {len(body.theta)} value(s) but the model has theta_dim={meta['theta_dim']}",
            "theta",
        )
    seed = body.seed if body.seed is not None else secrets.randbelow(2**63)
    _, draws = await _draw(state, meta["model_id"], x, body.num_samples, seed)
    draws = draws[:, 0]
    title = f"{meta.get('name') or meta['model_id']}: posterior for x = {_short(body.x)}"
    png = await run_in_threadpool(
        plots.pair_png,
        draws,
        _names(meta),
        title,
        meta.get("prior"),
        body.theta,
        body.width,
        body.height,
    )
    headers = {"X-Sbiserve-Model-Id": meta["model_id"], "X-Sbiserve-Seed": str(seed)}
    return Response(png, media_type="image/png", headers=headers)


def _short(values: Any, limit: int = 6) -> str:
    shown = ", ".join(f"{float(v):.3g}" for v in list(values)[:limit])
    return f"({shown}{', ...' if len(values) > limit else ''})"
